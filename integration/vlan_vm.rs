//! 802.1Q VLAN parents of tether-macvlan, proven in a qemu VM booting Debian's kernel (this machine's
//! kernel has no 8021q): containers on VLAN 10 and VLAN 20 reach their own VLAN's gateway and not the
//! other's, and the sub-interface tether made goes away with the last network using it. The scenario is
//! `vm/vlan_scenario.sh`; see `vm/mod.rs` for how the VM is built.

#[path = "vm/mod.rs"]
mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;
use vm::boot::Boot;
use vm::initramfs::Initramfs;
use vm::kernel_package::KernelPackage;

/// Booting takes about 10 s under TCG and the scenario a few more; this leaves room for a loaded machine.
const VM_TIMEOUT: Duration = Duration::from_secs(180);

const MODULES: &[&str] = &["8021q", "macvlan", "veth", "bridge"];

/// Every RESULT vm/vlan_scenario.sh prints, in order; a missing one fails the test.
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

/// A per-run directory for the staged tree and the initramfs, removed at the end unless
/// `TETHER_VM_KEEP` is set (to look inside the tree after a failure); the console log is kept apart.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::env::var_os("TETHER_VM_KEEP").is_some() {
            eprintln!(
                "TETHER_VM_KEEP: the initramfs tree is in {}",
                self.0.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn vm_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn vlan_parents_separate_containers_and_come_and_go_with_their_networks() {
    let kernel = KernelPackage::fetch(&vm_dir("vm-kernel"));
    let run = RunDir(std::env::temp_dir().join(format!("tether-vlan-vm-{}", std::process::id())));
    let fs = Initramfs::new(&run.0.join("root"));
    fs.add_modules(&kernel, MODULES);
    fs.add_binary(&which("ip"), "/sbin/ip");
    fs.add_binary(
        Path::new(env!("CARGO_BIN_EXE_tether-macvlan")),
        "/opt/cni/bin/tether-macvlan",
    );
    // tether-macvlan runs tether-ipam in-process; the binary is there as a runtime's CNI_PATH has it.
    fs.add_binary(
        Path::new(env!("CARGO_BIN_EXE_tether-ipam")),
        "/opt/cni/bin/tether-ipam",
    );
    // Debian's module options (bonding, dummy); without them those autoload with a device each.
    fs.add_host_file_if_present(
        Path::new("/lib/modprobe.d/systemd.conf"),
        "etc/modprobe.d/systemd.conf",
    );
    fs.set_init(include_str!("vm/init.sh"));
    fs.add_file("scenario.sh", include_str!("vm/vlan_scenario.sh"));
    let initrd = run.0.join("initrd.gz");
    fs.pack(&initrd);

    let log = vm_dir("vlan_vm-console.log");
    let console = Boot {
        kernel: &kernel.vmlinuz(),
        initrd: &initrd,
        memory_mb: 512,
        timeout: VM_TIMEOUT,
        log: &log,
    }
    .run();
    vm::results::assert_all_passed(&console, EXPECTED);
}

fn which(tool: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} not found; install iproute2"))
}
