//! tether-portmap: chained CNI plugin that publishes container ports (the `portMappings` capability).
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::portmap::PortmapPlugin,
        "tether-portmap: chained CNI plugin publishing container ports. Run by a container runtime after an interface plugin.",
    )
}

/// A plugin lives milliseconds: its memory is never given back one block at a time (src/process_arena.rs).
#[global_allocator]
static ALLOCATOR: tether::process_arena::ProcessArena =
    tether::process_arena::ProcessArena::for_short_lived_processes();
