use std::process::ExitCode;

fn main() -> ExitCode {
    let about = concat!(
        "tether-ipam ",
        env!("CARGO_PKG_VERSION"),
        ": file-locked IP address management"
    );
    tether::cni::run(&tether::ipam::TetherIpam, about)
}

/// A plugin lives milliseconds: its memory is never given back one block at a time (src/process_arena.rs).
#[global_allocator]
static ALLOCATOR: tether::process_arena::ProcessArena =
    tether::process_arena::ProcessArena::for_short_lived_processes();
