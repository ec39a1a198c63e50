use std::process::ExitCode;

fn main() -> ExitCode {
    let about = concat!(
        "tether-ipam ",
        env!("CARGO_PKG_VERSION"),
        ": file-locked IP address management"
    );
    tether::cni::run(&tether::ipam::TetherIpam, about)
}

// A short-lived process: memory from src/process_arena.rs, never returned to the kernel before exit.
tether::short_lived_allocator!();
