//! tether: the command line (networks, attach/detach, ps, gc, demo) and the OCI hook.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cli::main()
}

/// Every command is a short-lived process (the OCI hook most of all): src/process_arena.rs.
#[global_allocator]
static ALLOCATOR: tether::process_arena::ProcessArena =
    tether::process_arena::ProcessArena::for_short_lived_processes();
