//! Tests of kernel features this machine lacks (802.1Q, IPsec ESP), run in a qemu VM that boots Debian's own kernel
//! under TCG with a small initramfs built here from Debian packages: busybox-static, iproute2's `ip`, the
//! kernel modules a scenario needs, the tether binaries cargo built, and a shell scenario as PID 1 that
//! prints `RESULT <name> PASS|FAIL <detail>` lines and powers the VM off.
//!
//! Included by a test or bench file (a bench builds the unit tests below without their #[test] functions, so
//! their imports go unused) with `#[path = "harness/vm/mod.rs"] mod vm;`: [`scenario_vm::ScenarioVm`] runs one
//! scenario end to end and [`results::assert_all_passed`] checks its verdicts. Failures panic with what
//! to install or where the console log is: a test that cannot boot its VM fails, it never passes silently.
#![allow(dead_code, unused_imports)]

pub mod boot;
pub mod host_command;
pub mod initramfs;
pub mod kernel_package;
pub mod module_deps;
pub mod overlay_esp;
pub mod results;
pub mod scenario_vm;
