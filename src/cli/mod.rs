//! `tether`: the subcommands over the `network` and `endpoint` libraries. Errors go to stderr as
//! "tether: <what failed>: <why>; <what to do>" with exit status 1.

mod args;
pub mod demo;
mod output;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
use args::{
    AttachArgs, ClusterCommand, Command, ContainerInspectArgs, CreateArgs, DetachArgs, DoctorArgs,
    NetworkCommand, ServiceCommand, TraceArgs,
};

use crate::endpoint::{AttachRequest, EndpointError, Endpoints};
use crate::network::{split_option, CreateRequest, NetworkError, Networks};
use crate::service::publish::PublishRequest;
use crate::service::{CreateService, ServiceError, Services};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{context}: {source}")]
    Network {
        context: String,
        #[source]
        source: Box<NetworkError>,
    },
    #[error("{context}: {source}")]
    Endpoint {
        context: String,
        #[source]
        source: Box<EndpointError>,
    },
    #[error("demo: {source}")]
    Demo {
        #[source]
        source: Box<demo::DemoError>,
    },
    /// A diagnosis found something wrong; the report on stdout says what and what to do.
    #[error("{0}")]
    Diagnosis(String),
    #[error("inspecting container: {0}")]
    Inspect(#[from] crate::troubleshoot::InspectError),
    #[error("tracing: {0}")]
    Trace(#[from] crate::troubleshoot::TraceError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("{context}: {source}")]
    Service {
        context: String,
        #[source]
        source: Box<crate::service::ServiceError>,
    },
    #[error("hook: {source}")]
    Hook {
        #[source]
        source: Box<crate::hook::HookError>,
    },
}

fn network_err(context: impl Into<String>) -> impl FnOnce(NetworkError) -> CliError {
    let context = context.into();
    move |source| CliError::Network {
        context,
        source: Box::new(source),
    }
}

fn service_err(context: impl Into<String>) -> impl FnOnce(ServiceError) -> CliError {
    let context = context.into();
    move |source| CliError::Service {
        context,
        source: Box::new(source),
    }
}

fn endpoint_err(context: impl Into<String>) -> impl FnOnce(EndpointError) -> CliError {
    let context = context.into();
    move |source| CliError::Endpoint {
        context,
        source: Box::new(source),
    }
}

/// Entry point of the `tether` binary.
pub fn main() -> ExitCode {
    crate::cni::logging::init_from_env();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and succeed.
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            let text = err.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("tether: {text}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tether: {err}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Network(NetworkCommand::Create(a)) => create(a),
        Command::Network(NetworkCommand::Ls(a)) => {
            let list = Networks::from_env()
                .list()
                .map_err(network_err("listing networks"))?;
            output::networks(&list, a.json, a.quiet);
            Ok(())
        }
        Command::Network(NetworkCommand::Inspect(a)) => {
            let networks = Networks::from_env();
            let mut out = Vec::new();
            for name in &a.names {
                out.push(
                    networks
                        .inspect(name)
                        .map_err(network_err(format!("inspecting network {name}")))?,
                );
            }
            output::json(&out);
            Ok(())
        }
        Command::Network(NetworkCommand::Rm(a)) => {
            let networks = Networks::from_env();
            for name in &a.names {
                networks
                    .remove(name, a.force)
                    .map_err(network_err(format!("removing network {name}")))?;
                output::line(name);
            }
            Ok(())
        }
        Command::Service(c) => service(c),
        Command::Attach(a) => attach(a),
        Command::Detach(a) => detach(a),
        Command::Ps(a) => {
            let mut list = Endpoints::from_env()
                .list()
                .map_err(endpoint_err("listing attachments"))?;
            if let Some(net) = &a.network {
                list.retain(|x| &x.network == net);
            }
            output::attachments(&list, a.json);
            Ok(())
        }
        Command::Gc(a) => {
            let freed = Endpoints::from_env()
                .gc()
                .map_err(endpoint_err("collecting garbage"))?;
            if a.json {
                output::json(&freed);
            } else if freed.is_empty() {
                output::line("nothing to collect");
            } else {
                for f in &freed {
                    output::line(&format!(
                        "detached {} from {} ({}): its namespace is gone",
                        f.container_id, f.network, f.ifname
                    ));
                }
            }
            Ok(())
        }
        Command::Doctor(a) => doctor(a),
        Command::Inspect(a) => inspect(a),
        Command::Trace(a) => trace(a),
        Command::Cluster(c) => cluster(c),
        Command::Demo => demo::run().map_err(|source| CliError::Demo {
            source: Box::new(source),
        }),
        Command::Hook(a) => match crate::hook::run(&a.args, std::io::stdin().lock()) {
            Err(crate::hook::HookError::HelpRequested) => {
                output::line(crate::hook::USAGE);
                Ok(())
            }
            other => other.map_err(|source| CliError::Hook {
                source: Box::new(source),
            }),
        },
    }
}

/// `tether cluster ...`: asks this host's tetherd (its overlay service) over the control socket.
fn cluster(c: ClusterCommand) -> Result<(), CliError> {
    let (command, json) = match &c {
        ClusterCommand::Status { json } => (serde_json::json!({"cluster": "status"}), *json),
        ClusterCommand::Forget { host } => (
            serde_json::json!({"cluster": "forget", "host": host.to_string()}),
            false,
        ),
        ClusterCommand::Rotation { seconds } => (
            serde_json::json!({"cluster": "rotation", "intervalS": seconds}),
            false,
        ),
    };
    let request = crate::client::protocol::Request::Service {
        service: "overlay".into(),
        command,
    };
    let reply = crate::client::notify::request(
        &crate::paths::run_dir(),
        &request,
        std::time::Duration::from_secs(15),
    )
    .map_err(|e| CliError::Cluster(format!("tetherd does not answer ({e}); is it running?")))?;
    if !reply.ok {
        return Err(CliError::Cluster(reply.error.unwrap_or_default()));
    }
    let answer = reply.status.unwrap_or_default();
    match c {
        ClusterCommand::Status { .. } if json => output::json(&answer),
        ClusterCommand::Status { .. } => output::cluster_status(&answer),
        ClusterCommand::Forget { host } => output::line(&format!(
            "forgot {host}: {} blocks and records removed",
            answer["removed"]
        )),
        ClusterCommand::Rotation { seconds } => output::line(&format!(
            "keys rotate every {seconds} s from epoch {} (unix ms {}), on every host",
            answer["current"]["anchorEpoch"], answer["current"]["anchorMs"]
        )),
    }
    Ok(())
}

fn service(command: ServiceCommand) -> Result<(), CliError> {
    let services = Services::from_env();
    match command {
        ServiceCommand::Create(a) => {
            let affinity = match a.affinity.as_str() {
                "none" => crate::state::service::Affinity::None,
                "client" => crate::state::service::Affinity::Client,
                other => {
                    return Err(service_err(format!("creating service {}", a.name))(
                        ServiceError::Bad(format!(
                            "unknown affinity {other:?}; use none or client"
                        )),
                    ))
                }
            };
            let req = CreateService {
                name: a.name.clone(),
                network: a.network,
                ports: a.ports,
                vip: a.vip,
                mode: a.mode,
                health: a.health,
                timing: crate::state::service::HealthTiming {
                    interval_ms: a.health_interval,
                    rise: a.health_rise.max(1),
                    fall: a.health_fall.max(1),
                },
                affinity,
            };
            let context = format!("creating service {}", a.name);
            let spec = services.create(&req).map_err(service_err(&context))?;
            let publish = PublishRequest {
                add: a.mesh.publish,
                remove: Vec::new(),
                mode: a.mesh.publish_mode,
                policy: a.mesh.mesh_policy,
                preserve_client_ip: Some(a.mesh.preserve_client_ip),
            };
            if !publish.add.is_empty() {
                if let Err(e) = services.publish(&spec.name, &publish) {
                    // Nothing half-made: the service goes with its refused publication.
                    let _ = services.remove(&spec.name);
                    return Err(service_err(context)(e));
                }
            }
            if a.json {
                output::json(&spec);
            } else {
                output::line(&spec.name);
            }
        }
        ServiceCommand::Update(a) => {
            let req = PublishRequest {
                add: a.publish_add,
                remove: a.publish_rm,
                mode: a.publish_mode,
                policy: a.mesh_policy,
                preserve_client_ip: a.preserve_client_ip,
            };
            let context = format!("updating service {}", a.name);
            if req.is_empty() {
                return Err(service_err(context)(ServiceError::Bad(
                    "nothing to change; give --publish-add, --publish-rm or a mesh option".into(),
                )));
            }
            let mesh = services
                .publish(&a.name, &req)
                .map_err(service_err(context))?;
            if a.json {
                output::json(&mesh);
            } else {
                output::line(&a.name);
            }
        }
        ServiceCommand::Ls(a) => {
            let list = services.list().map_err(service_err("listing services"))?;
            output::services(&list, a.json, a.quiet);
        }
        ServiceCommand::Inspect(a) => {
            let mut out = Vec::new();
            for name in &a.names {
                out.push(
                    services
                        .inspect(name)
                        .map_err(service_err(format!("inspecting service {name}")))?,
                );
            }
            output::json(&out);
        }
        ServiceCommand::Rm(a) => {
            for name in &a.names {
                services
                    .remove(name)
                    .map_err(service_err(format!("removing service {name}")))?;
                output::line(name);
            }
        }
    }
    Ok(())
}

fn create(a: CreateArgs) -> Result<(), CliError> {
    let context = format!("creating network {}", a.name);
    let options = a
        .opt
        .iter()
        .map(|o| split_option(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(network_err(&context))?;
    let req = CreateRequest {
        name: a.name.clone(),
        driver: a.driver,
        subnets: a.subnet,
        gateway: a.gateway,
        ip_range: a.ip_range,
        ipv6: a.ipv6,
        internal: a.internal,
        options,
    };
    let net = Networks::from_env()
        .create(&req)
        .map_err(network_err(&context))?;
    output::network_created(&net, a.json);
    warn_about_foreign_forward_drops();
    Ok(())
}

/// A person creating a network on a host whose other firewall drops forwarded traffic learns it now,
/// with the rules to add, rather than from containers that cannot reach anything. Best effort: a host
/// without nf_tables has no such chain either.
fn warn_about_foreign_forward_drops() {
    let drops = crate::firewall::Firewall::open().and_then(|fw| fw.foreign_forward_drops());
    for drop in drops.unwrap_or_default() {
        eprintln!("warning: {drop}");
    }
}

fn attach(a: AttachArgs) -> Result<(), CliError> {
    let netns = match (a.netns, a.pid) {
        (Some(path), _) => path,
        (None, Some(pid)) => format!("/proc/{pid}/ns/net").into(),
        (None, None) => unreachable!("clap requires --netns or --pid"),
    };
    let req = AttachRequest {
        network: a.network,
        container_id: a.container_id,
        netns,
        ifname: a.ifname,
        ips: a.ip,
        mac: a.mac,
        ports: a.publish,
        name: a.name,
        aliases: a.alias,
    };
    let context = format!(
        "attaching container {} to network {}",
        req.container_id, req.network
    );
    let attachment = Endpoints::from_env()
        .attach(&req)
        .map_err(endpoint_err(context))?;
    output::attached(&attachment, a.json);
    Ok(())
}

fn detach(a: DetachArgs) -> Result<(), CliError> {
    if let Some(seconds) = a.drain {
        let report = crate::service::drain::drain(
            &a.container_id,
            a.network.as_deref(),
            a.ifname.as_deref(),
            std::time::Duration::from_secs(seconds),
        )
        .map_err(service_err(format!(
            "draining container {}",
            a.container_id
        )))?;
        if !report.services.is_empty() {
            output::line(&format!(
                "drained {} ({}): {} open connection(s) when it left the maps, {} left after {} ms",
                a.container_id,
                report.services.join(", "),
                report.connections_at_start,
                report.connections_left,
                report.waited_ms
            ));
        }
    }
    let endpoints = Endpoints::from_env();
    match &a.network {
        Some(network) => endpoints
            .detach(network, &a.container_id, a.ifname.as_deref())
            .map_err(endpoint_err(format!(
                "detaching container {} from network {network}",
                a.container_id
            ))),
        None => endpoints
            .detach_all(&a.container_id)
            .map(drop)
            .map_err(endpoint_err(format!(
                "detaching container {}",
                a.container_id
            ))),
    }
}

fn doctor(a: DoctorArgs) -> Result<(), CliError> {
    let report = crate::troubleshoot::Doctor::from_env().run();
    output::doctor(&report, a.json);
    if report.healthy {
        Ok(())
    } else {
        Err(CliError::Diagnosis(format!(
            "doctor: {} problem(s) found; each says what to do",
            report.problems
        )))
    }
}

fn inspect(a: ContainerInspectArgs) -> Result<(), CliError> {
    let report = crate::troubleshoot::Inspector::from_env().inspect(&a.container)?;
    output::inspection(&report, a.json);
    if report.differences == 0 {
        Ok(())
    } else {
        Err(CliError::Diagnosis(format!(
            "inspect: {} difference(s) between what tether made and what the kernel has",
            report.differences
        )))
    }
}

fn trace(a: TraceArgs) -> Result<(), CliError> {
    let report = crate::troubleshoot::Tracer::from_env().trace(&a.source, &a.destination)?;
    output::trace(&report, a.json);
    if report.delivered {
        Ok(())
    } else {
        Err(CliError::Diagnosis(format!(
            "trace: {} -> {} does not get through; the step marked DROP says why and what to do",
            report.source, report.destination
        )))
    }
}
