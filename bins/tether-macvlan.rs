//! tether-macvlan: CNI plugin giving each container a macvlan child of a parent link.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::macvlan::MacvlanPlugin,
        "tether-macvlan: CNI plugin (macvlan child of a parent link; 802.1Q parents). Run by a container runtime with CNI_* variables and the network config on stdin.",
    )
}

// A short-lived process: memory from src/process_arena.rs, never returned to the kernel before exit.
tether::short_lived_allocator!();
