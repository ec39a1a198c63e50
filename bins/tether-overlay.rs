//! tether-overlay: CNI plugin for a VXLAN overlay network spanning hosts.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::overlay::OverlayPlugin,
        "tether-overlay: CNI plugin (VXLAN overlay across hosts). Run by a container runtime with CNI_* variables and the network config on stdin.",
    )
}

// A short-lived process: memory from src/process_arena.rs, never returned to the kernel before exit.
tether::short_lived_allocator!();
