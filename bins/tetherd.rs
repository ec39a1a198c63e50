//! tetherd: tether's resident helper (embedded DNS and the overlay control plane). Started on demand by
//! the plugins, or in the foreground under systemd (`conf/tetherd.service`).
use std::path::PathBuf;
use std::process::ExitCode;

use tether::daemon::{self, DaemonOptions, Service};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const USAGE: &str = "usage: tetherd [--config PATH] [--stay]
       tetherd --docker-plugin [--docker-socket PATH]
  Serves DNS at 127.0.0.11 inside attached containers and, with an \"overlay\" config section, the overlay
  control plane; exits when nothing needs it (unless --stay). With --docker-plugin, serves Docker's network
  and IPAM driver `tether` instead, on PATH (default /run/docker/plugins/tether.sock), and the network
  drivers `tether-macvlan` and `tether-overlay` on tether-macvlan.sock and tether-overlay.sock beside it,
  until killed.
  Paths: TETHER_STATE_DIR, TETHER_RUN_DIR, TETHER_RESOLV_CONF; config: TETHER_DAEMON_CONFIG or --config.";

fn main() -> ExitCode {
    let mut config_path = tether::paths::daemon_config();
    let mut stay = false;
    let mut docker_plugin = false;
    let mut docker_socket = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(p) => config_path = PathBuf::from(p),
                None => return usage_error("--config needs a path"),
            },
            "--stay" => stay = true,
            "--docker-plugin" => docker_plugin = true,
            "--docker-socket" => match args.next() {
                Some(p) => docker_socket = Some(PathBuf::from(p)),
                None => return usage_error("--docker-socket needs a path"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    init_logging();
    if docker_plugin {
        let sockets = tether::docker::sockets(docker_socket);
        return match tether::docker::serve(&sockets, tether::docker::DockerState::from_env()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tetherd: serving Docker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if docker_socket.is_some() {
        return usage_error("--docker-socket goes with --docker-plugin");
    }
    let mut opts = match DaemonOptions::from_env(&config_path) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tetherd: {e}");
            return ExitCode::FAILURE;
        }
    };
    opts.config.stay |= stay;
    // The balancer writes the service names the resolver answers.
    let service_names = tether::dns::service_names::SharedServiceNames::default();
    let services: Vec<Box<dyn Service>> = vec![
        Box::new(tether::dns::DnsService::new().with_service_names(service_names.clone())),
        Box::new(tether::service::BalancerService::new(service_names)),
        Box::new(tether::overlay::OverlayService::new()),
    ];
    match daemon::run(opts, services) {
        Ok(exit) => {
            tracing::info!(?exit, "tetherd exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "tetherd failed");
            eprintln!("tetherd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("tetherd: {msg}\n{USAGE}");
    ExitCode::from(2)
}

/// Logs to stderr (the log file when started on demand); `TETHER_LOG` sets the filter, `info` otherwise.
fn init_logging() {
    let directive = std::env::var("TETHER_LOG")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "info".into());
    let filter = tether::cni::logging::filter(&directive, LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .try_init();
}
