//! 802.1Q VLAN parents of tether-macvlan, proven in a qemu VM booting Debian's kernel (this machine's
//! kernel has no 8021q): containers on VLAN 10 and VLAN 20 reach their own VLAN's gateway and not the
//! other's, the sub-interface tether made goes away with the last network using it (DEL or GC) while one
//! the user made stays, and without 8021q an ADD is refused by name. The scenario is
//! `vm_scenarios/vlan.sh`; see `harness/vm/mod.rs` for how the VM is built.

#[path = "harness/vm/mod.rs"]
mod vm;

use std::path::Path;
use std::time::Duration;
use vm::scenario_vm::ScenarioVm;

/// Booting takes 4-10 s under TCG and the scenario 15-20 s; this leaves room for a loaded machine.
const VM_TIMEOUT: Duration = Duration::from_secs(180);

const MODULES: &[&str] = &["8021q", "macvlan", "veth", "bridge"];

/// Every RESULT vm_scenarios/vlan.sh prints; a missing one fails the test, and so does one not listed.
const EXPECTED: &[&str] = &[
    "add_without_8021q_names_the_missing_feature",
    "no_subif_left_by_the_refused_add",
    "no_lease_left_by_the_refused_add",
    "add_v10_c1",
    "subif_v10_created_as_8021q_id_10",
    "add_v10_c2",
    "add_v10b_c1",
    "add_v20_c1",
    "subif_v20_created_as_8021q_id_20",
    "v10_reaches_own_gateway",
    "v10b_reaches_own_gateway",
    "v20_reaches_own_gateway",
    "v10_containers_reach_each_other",
    "v10_cannot_reach_v20_gateway",
    "v10_cannot_reach_v20_gateway_onlink",
    "v20_cannot_reach_v10_container",
    "del_v10_c1",
    "subif_v10_kept_while_v10_has_containers",
    "del_v10_c2",
    "subif_v10_kept_while_v10b_uses_it",
    "v10b_still_reaches_gateway",
    "del_v10b_c1",
    "subif_v10_gone_after_last_network_left",
    "v20_unaffected_by_v10_removal",
    "gc_v20_without_valid_attachments",
    "subif_v20_gone_after_gc",
    "add_v30_on_user_subif",
    "v30_reaches_own_gateway",
    "del_v30_c1",
    "user_subif_v30_kept_after_last_del",
];

#[test]
fn vlan_parents_separate_containers_and_come_and_go_with_their_networks() {
    let console = ScenarioVm {
        name: "vlan_vm",
        modules: MODULES,
        binaries: &[
            (
                Path::new(env!("CARGO_BIN_EXE_tether-macvlan")),
                "/opt/cni/bin/tether-macvlan",
            ),
            // Run in-process by tether-macvlan; there as a runtime's CNI_PATH has it.
            (
                Path::new(env!("CARGO_BIN_EXE_tether-ipam")),
                "/opt/cni/bin/tether-ipam",
            ),
        ],
        scenario: include_str!("vm_scenarios/vlan.sh"),
        timeout: VM_TIMEOUT,
        memory_mb: 512,
    }
    .run();
    vm::results::assert_all_passed(&console, EXPECTED);
}
