//! tether-bridge: CNI plugin for a Linux bridge network.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::bridge::BridgePlugin,
        "tether-bridge: CNI plugin (bridge + veth). Run by a container runtime with CNI_* variables and the network config on stdin.",
    )
}

// A short-lived process: memory from src/process_arena.rs, never returned to the kernel before exit.
tether::short_lived_allocator!();
