//! tether: the command line (networks, attach/detach, ps, gc, demo) and the OCI hook.
use std::process::ExitCode;

fn main() -> ExitCode {
    tether::cli::main()
}
