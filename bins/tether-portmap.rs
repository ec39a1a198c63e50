//! tether-portmap: chained CNI plugin that publishes container ports (the `portMappings` capability).
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cni::plugin::run(
        &tether::driver::portmap::PortmapPlugin,
        "tether-portmap: chained CNI plugin publishing container ports. Run by a container runtime after an interface plugin.",
    )
}

// A short-lived process: memory from src/process_arena.rs, never returned to the kernel before exit.
tether::short_lived_allocator!();
