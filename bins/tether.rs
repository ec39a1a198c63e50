//! tether: the CLI. Until the CLI lands here, only `tether hook` (the OCI runtime hook).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("hook") => hook(&args[1..]),
        _ => {
            eprintln!("usage: tether hook [attach|detach] ...");
            ExitCode::from(2)
        }
    }
}

fn hook(args: &[String]) -> ExitCode {
    tether::cni::logging::init_from_env();
    match tether::hook::run(args, std::io::stdin().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(tether::hook::HookError::HelpRequested) => {
            println!("{}", tether::hook::USAGE);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether hook: {e}");
            ExitCode::FAILURE
        }
    }
}
