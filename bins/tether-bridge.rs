//! tether-bridge: CNI plugin for a Linux bridge network.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::bridge::BridgePlugin,
        "tether-bridge: CNI plugin (bridge + veth). Run by a container runtime with CNI_* variables and the network config on stdin.",
    )
}

/// A plugin lives milliseconds: its memory is never given back one block at a time (src/process_arena.rs).
#[global_allocator]
static ALLOCATOR: tether::process_arena::ProcessArena =
    tether::process_arena::ProcessArena::for_short_lived_processes();
