//! tether: the command line (networks, attach/detach, ps, gc, demo) and the OCI hook.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cli::main()
}

// A short-lived process: memory from src/process_arena.rs, never returned to the kernel before exit.
tether::short_lived_allocator!();
