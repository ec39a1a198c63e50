//! One VM test end to end: fetch the kernel, stage and pack the initramfs with the given modules, binaries
//! and scenario, boot it, and hand back the console. A test then checks the verdicts with
//! [`super::results::assert_all_passed`].

use super::boot::{Boot, Console};
use super::initramfs::Initramfs;
use super::kernel_package::KernelPackage;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ScenarioVm<'a> {
    /// Names the run directory and the console log (`target/tmp/<name>-console.log`).
    pub name: &'a str,
    /// Kernel modules loaded (with their dependencies) before the scenario starts.
    pub modules: &'a [&'a str],
    /// Executables to copy in with their libraries: (host path, path in the VM).
    pub binaries: &'a [(&'a Path, &'a str)],
    /// Shell sourced by the generic `/init` (vm/init.sh), which provides `ip`, `check` and `check_fails`.
    pub scenario: &'a str,
    pub timeout: Duration,
    /// Guest memory; the initramfs is unpacked into it.
    pub memory_mb: u32,
}

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

/// Cargo's per-package scratch directory for integration tests (target/tmp): kept across runs, so the
/// kernel cache and the last console log live there.
fn target_tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

impl ScenarioVm<'_> {
    pub fn run(&self) -> Console {
        let kernel = KernelPackage::fetch(&target_tmp("vm-kernel"));
        let dir = std::env::temp_dir().join(format!("tether-{}-{}", self.name, std::process::id()));
        let run = RunDir(dir);
        let fs = Initramfs::new(&run.0.join("root"));
        fs.add_modules(&kernel, self.modules);
        fs.add_binary(&iproute2_ip(), "/sbin/ip");
        for (src, dest) in self.binaries {
            fs.add_binary(src, dest);
        }
        // Debian's module options (bonding, dummy): without them those autoload with a device each.
        fs.add_host_file_if_present(
            Path::new("/lib/modprobe.d/systemd.conf"),
            "etc/modprobe.d/systemd.conf",
        );
        fs.set_init(include_str!("init.sh"));
        fs.add_file("scenario.sh", self.scenario);
        let initrd = run.0.join("initrd.gz");
        fs.pack(&initrd);
        Boot {
            kernel: &kernel.vmlinuz(),
            initrd: &initrd,
            memory_mb: self.memory_mb,
            timeout: self.timeout,
            log: &target_tmp(&format!("{}-console.log", self.name)),
        }
        .run()
    }
}

fn iproute2_ip() -> PathBuf {
    ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("iproute2's ip not found; install iproute2"))
}
