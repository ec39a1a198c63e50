//! tether-overlay: CNI plugin for a VXLAN overlay network spanning hosts.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::overlay::OverlayPlugin,
        "tether-overlay: CNI plugin (VXLAN overlay across hosts). Run by a container runtime with CNI_* variables and the network config on stdin.",
    )
}

/// A plugin lives milliseconds: its memory is never given back one block at a time (src/process_arena.rs).
#[global_allocator]
static ALLOCATOR: tether::process_arena::ProcessArena =
    tether::process_arena::ProcessArena::for_short_lived_processes();
