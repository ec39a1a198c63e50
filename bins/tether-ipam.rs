use std::process::ExitCode;

fn main() -> ExitCode {
    let about = concat!(
        "tether-ipam ",
        env!("CARGO_PKG_VERSION"),
        ": file-locked IP address management"
    );
    tether::cni::run(&tether::ipam::TetherIpam, about)
}
