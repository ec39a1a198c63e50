//! 802.1Q VLAN parents of tether-macvlan, proven in a qemu VM booting Debian's kernel (this machine's
//! kernel has no 8021q): containers on VLAN 10 and VLAN 20 reach their own VLAN's gateway and not the
//! other's, the sub-interface tether made goes away with the last network using it (DEL or GC) while one
//! the user made stays, and without 8021q an ADD is refused by name. The scenario is
//! `vm_scenarios/vlan.sh`; the Docker driver's is `vm_scenarios/docker_vlan.sh`, both behind the switch of
//! `vm_scenarios/vlan_switch.sh`; see `harness/vm/mod.rs` for how the VM is built.

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
        scenario: concat!(
            include_str!("vm_scenarios/vlan_switch.sh"),
            include_str!("vm_scenarios/vlan.sh")
        ),
        timeout: VM_TIMEOUT,
        memory_mb: 512,
    }
    .run();
    vm::results::assert_all_passed(&console, EXPECTED);
}

/// Every RESULT vm_scenarios/docker_vlan.sh prints.
const DOCKER_EXPECTED: &[&str] = &[
    "driver_answers",
    "create_without_8021q_names_the_missing_feature",
    "no_subif_left_by_the_refused_create",
    "create_n10_makes_the_subif",
    "subif_10_is_8021q_id_10",
    "create_n10b_on_the_same_subif",
    "create_n20",
    "subif_20_is_8021q_id_20",
    "run_c10a",
    "run_c10b",
    "run_c20a",
    "c10a_reaches_own_gateway",
    "c20a_reaches_own_gateway",
    "c10a_reaches_c10b",
    "c10a_cannot_reach_v20_gateway",
    "c10a_cannot_reach_v20_gateway_onlink",
    "stop_c10a",
    "rm_n10",
    "subif_10_kept_while_n10b_uses_it",
    "c10b_still_reaches_gateway",
    "stop_c10b",
    "rm_n10b",
    "subif_10_gone_with_its_last_network",
    "c20a_unaffected",
    "driver_answers_after_restart",
    "stop_c20a_after_restart",
    "rm_n20_after_restart",
    "subif_20_gone_after_restart_and_rm",
    "create_n30_on_user_subif",
    "run_c30a",
    "c30a_reaches_own_gateway",
    "stop_c30a",
    "rm_n30",
    "user_subif_30_kept",
    "no_vlan_record_left",
    "no_endpoint_link_left_on_the_host",
];

/// The Docker driver `tether-macvlan` with `-o parent=up0.N`: tetherd --docker-plugin in the VM, called over
/// its unix socket with the bodies dockerd sends (dockerd itself does not fit in the VM's initramfs). The
/// sub-interface is made by CreateNetwork and removed by the DeleteNetwork of its last network, also after
/// the driver restarted; one the user made stays.
#[test]
fn docker_macvlan_networks_make_and_remove_their_vlan_parents() {
    let console = ScenarioVm {
        name: "docker_vlan_vm",
        modules: MODULES,
        binaries: &[
            (
                Path::new(env!("CARGO_BIN_EXE_tetherd")),
                "/usr/local/bin/tetherd",
            ),
            (Path::new("/usr/bin/curl"), "/usr/bin/curl"),
        ],
        scenario: concat!(
            include_str!("vm_scenarios/vlan_switch.sh"),
            include_str!("vm_scenarios/docker_vlan.sh")
        ),
        timeout: VM_TIMEOUT,
        memory_mb: 1024,
    }
    .run();
    vm::results::assert_all_passed(&console, DOCKER_EXPECTED);
}
