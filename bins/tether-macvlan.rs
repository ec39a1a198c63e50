//! tether-macvlan: CNI plugin giving each container a macvlan child of a parent link.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::macvlan::MacvlanPlugin,
        "tether-macvlan: CNI plugin (macvlan child of a parent link; 802.1Q parents). Run by a container runtime with CNI_* variables and the network config on stdin.",
    )
}

/// A plugin lives milliseconds: its memory is never given back one block at a time (src/process_arena.rs).
#[global_allocator]
static ALLOCATOR: tether::process_arena::ProcessArena =
    tether::process_arena::ProcessArena::for_short_lived_processes();
