//! tether as Docker's remote network driver and IPAM driver, both named `tether`, on one unix socket
//! (`tetherd --docker-plugin`): Docker's legacy plugin API, JSON over HTTP/1.1. An entry point like `hook`
//! and `cli`: it drives tether's own libraries (link, firewall, IPAM store, the bridge driver's steps) and
//! keeps its state in the state directory (`records`), so a restart of either side loses nothing.
//! Docs: docs/docker.md.

mod bridge_driver;
mod docker_user;
mod http;
mod ipam_driver;
mod macvlan_driver;
mod options;
mod overlay_driver;
mod protocol;
mod records;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::Error;
use protocol::{
    Api, CreateEndpointRequest, CreateNetworkRequest, EndpointRequest, ExternalConnectivityRequest,
    InterfaceName, JoinResponse, NetworkRequest, ReleaseAddressRequest, ReleasePoolRequest,
    RequestAddressRequest, RequestPoolRequest,
};
pub use records::{DockerDriver, DockerState};

/// Where Docker looks for a plugin named `tether`.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/tether.sock";
/// The `tether-macvlan` driver's socket, beside the other one (Docker finds a plugin by its socket's name).
pub const MACVLAN_SOCKET_NAME: &str = "tether-macvlan.sock";
/// The `tether-overlay` driver's socket, beside them.
pub const OVERLAY_SOCKET_NAME: &str = "tether-overlay.sock";

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::config(format!("request body is not what this call takes: {e}")))
}

/// Answers one plugin API call to `driver`'s socket; `Ok` bodies are the API's success replies.
fn answer(
    state: &DockerState,
    driver: DockerDriver,
    path: &str,
    body: &[u8],
) -> Result<Value, Error> {
    let bridge = driver == DockerDriver::Bridge;
    match path {
        "/Plugin.Activate" if !bridge => Ok(json!({ "Implements": ["NetworkDriver"] })),
        "/Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
        "/NetworkDriver.GetCapabilities" => Ok(bridge_driver::capabilities()),
        "/NetworkDriver.CreateNetwork" => {
            let r: CreateNetworkRequest = parse(body)?;
            match driver {
                DockerDriver::Bridge => bridge_driver::create_network(state, &r),
                DockerDriver::Macvlan => macvlan_driver::create_network(state, &r),
                DockerDriver::Overlay => overlay_driver::create_network(state, &r),
            }
        }
        "/NetworkDriver.DeleteNetwork" => {
            let id = parse::<NetworkRequest>(body)?.network_id;
            match driver {
                DockerDriver::Bridge => bridge_driver::delete_network(state, &id),
                DockerDriver::Macvlan => macvlan_driver::delete_network(state, &id),
                DockerDriver::Overlay => overlay_driver::delete_network(state, &id),
            }
        }
        "/NetworkDriver.CreateEndpoint" => {
            let r: CreateEndpointRequest = parse(body)?;
            match driver {
                DockerDriver::Bridge => bridge_driver::create_endpoint(state, &r),
                DockerDriver::Macvlan => macvlan_driver::create_endpoint(state, &r),
                DockerDriver::Overlay => overlay_driver::create_endpoint(state, &r),
            }
        }
        "/NetworkDriver.DeleteEndpoint" => delete_endpoint(state, driver, &parse(body)?),
        "/NetworkDriver.EndpointOperInfo" => Ok(json!({ "Value": {} })),
        "/NetworkDriver.Join" => {
            let r: EndpointRequest = parse(body)?;
            join(state, &r.network_id, &r.endpoint_id)
        }
        // Docker moves the interface back out of the container itself; DeleteEndpoint removes it.
        "/NetworkDriver.Leave" => Ok(json!({})),
        // macvlan containers sit on the parent's network: nothing to publish; an overlay container's ports
        // are published on Docker's gateway network (its bridge driver gets the calls).
        "/NetworkDriver.ProgramExternalConnectivity"
        | "/NetworkDriver.RevokeExternalConnectivity"
            if !bridge =>
        {
            Ok(json!({}))
        }
        "/NetworkDriver.ProgramExternalConnectivity" => {
            bridge_driver::program_external_connectivity(
                state,
                &parse::<ExternalConnectivityRequest>(body)?,
            )
        }
        "/NetworkDriver.RevokeExternalConnectivity" => {
            let r: EndpointRequest = parse(body)?;
            bridge_driver::revoke_external_connectivity(state, &r.endpoint_id)
        }
        // A local-scope driver: no discovery, no cluster-wide allocation.
        "/NetworkDriver.DiscoverNew" | "/NetworkDriver.DiscoverDelete" => Ok(json!({})),
        "/NetworkDriver.AllocateNetwork" => Ok(json!({ "Options": {} })),
        "/NetworkDriver.FreeNetwork" => Ok(json!({})),
        ipam if !bridge && ipam.starts_with("/IpamDriver.") => Err(Error::unsupported(
            "the IPAM driver is `tether` (on tether.sock), not tether-macvlan or tether-overlay",
        )),
        "/IpamDriver.GetCapabilities" => Ok(ipam_driver::capabilities()),
        "/IpamDriver.GetDefaultAddressSpaces" => Ok(ipam_driver::default_address_spaces()),
        "/IpamDriver.RequestPool" => {
            ipam_driver::request_pool(state, &parse::<RequestPoolRequest>(body)?)
        }
        "/IpamDriver.ReleasePool" => {
            ipam_driver::release_pool(state, &parse::<ReleasePoolRequest>(body)?.pool_id)
        }
        "/IpamDriver.RequestAddress" => {
            ipam_driver::request_address(state, &parse::<RequestAddressRequest>(body)?)
        }
        "/IpamDriver.ReleaseAddress" => {
            let r: ReleaseAddressRequest = parse(body)?;
            ipam_driver::release_address(state, &r.pool_id, &r.address)
        }
        other => Err(Error::unsupported(format!(
            "{other} is not a call of the plugin API tether implements"
        ))),
    }
}

/// DeleteEndpoint through `driver`'s own removal.
fn delete_endpoint(
    state: &DockerState,
    driver: DockerDriver,
    r: &EndpointRequest,
) -> Result<Value, Error> {
    match driver {
        DockerDriver::Bridge => {
            bridge_driver::delete_endpoint(state, &r.network_id, &r.endpoint_id)
        }
        DockerDriver::Macvlan => macvlan_driver::delete_endpoint(state, &r.endpoint_id),
        DockerDriver::Overlay => bridge_driver::delete_endpoint_by(
            state,
            (&r.network_id, &r.endpoint_id),
            overlay_driver::remove_endpoint,
        ),
    }
}

/// Join is the same for every driver: Docker moves the endpoint's interface into the container, names it
/// `ethN`, and routes through the network's gateway unless the network is internal.
fn join(state: &DockerState, network_id: &str, endpoint_id: &str) -> Result<Value, Error> {
    let net = state.known_network(network_id)?;
    let ep = state.known_endpoint(endpoint_id)?;
    let gateway = |v4: bool| -> String {
        if net.internal {
            return String::new();
        }
        net.gateways
            .iter()
            .find(|g| g.is_ipv4() == v4)
            .map(|g| g.ip().to_string())
            .unwrap_or_default()
    };
    let reply = JoinResponse {
        interface_name: InterfaceName {
            src_name: ep.peer_if.clone(),
            dst_prefix: "eth".into(),
        },
        gateway: gateway(true),
        gateway_ipv6: gateway(false),
        disable_gateway_service: false,
    };
    Ok(serde_json::to_value(reply).expect("join reply serializes"))
}

/// One call, start to end: read, answer (one at a time: Docker's calls are few, and each reads and
/// writes the records of the network it touches), reply.
fn serve_connection(
    stream: UnixStream,
    driver: DockerDriver,
    state: &DockerState,
    one_at_a_time: &Mutex<()>,
) {
    // A client that connects and says nothing must not hold a thread for ever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = match http::read_request(&stream) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "docker: unreadable request");
            return;
        }
    };
    let api = Api::of_path(&request.path);
    let started = std::time::Instant::now();
    let reply = {
        let _turn = one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        answer(state, driver, &request.path, &request.body)
    };
    let took_us = started.elapsed().as_micros();
    let body = match reply {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(call = %request.path, error = %e, "docker: call refused");
            api.error_body(&e.to_string())
        }
    };
    tracing::debug!(call = %request.path, took_us, reply = %body, "docker: call");
    if let Err(e) = http::write_json(&stream, &body) {
        tracing::debug!(error = %e, "docker: reply not delivered");
    }
}

/// Binds `socket`: a stale socket file (nobody answers on it) is replaced; a live one means another
/// tetherd serves Docker already.
fn bind(socket: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(socket).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} is served by another process already (a second tetherd --docker-plugin?)",
                socket.display()
            ),
        ));
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves Docker on each socket (one per driver) until the process is killed.
pub fn serve(sockets: &[(PathBuf, DockerDriver)], state: DockerState) -> io::Result<()> {
    let mut listeners = Vec::new();
    for (path, driver) in sockets {
        listeners.push((bind(path)?, *driver));
        tracing::info!(socket = %path.display(), ?driver, "docker: serving");
    }
    if let Err(e) = bridge_driver::restore(&state) {
        tracing::warn!(error = %e, "docker: could not restore after a restart");
    }
    let shared = Arc::new((state, Mutex::new(())));
    let mut accepting = Vec::new();
    for (listener, driver) in listeners {
        let shared = Arc::clone(&shared);
        accepting.push(std::thread::spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "docker: accept failed");
                        continue;
                    }
                };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve_connection(stream, driver, &shared.0, &shared.1));
            }
        }));
    }
    for thread in accepting {
        let _ = thread.join();
    }
    Ok(())
}

/// The sockets: `tether` at `given` (else Docker's default place), `tether-macvlan` and `tether-overlay`
/// beside it.
pub fn sockets(given: Option<PathBuf>) -> Vec<(PathBuf, DockerDriver)> {
    let bridge = given.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let macvlan = bridge.with_file_name(MACVLAN_SOCKET_NAME);
    let overlay = bridge.with_file_name(OVERLAY_SOCKET_NAME);
    vec![
        (bridge, DockerDriver::Bridge),
        (macvlan, DockerDriver::Macvlan),
        (overlay, DockerDriver::Overlay),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> DockerState {
        DockerState::new(
            &std::env::temp_dir().join(format!("tether-docker-answer-{}", std::process::id())),
        )
    }

    #[test]
    fn each_socket_offers_its_own_drivers() {
        let s = state();
        let bridge = answer(&s, DockerDriver::Bridge, "/Plugin.Activate", b"{}").unwrap();
        assert_eq!(bridge["Implements"], json!(["NetworkDriver", "IpamDriver"]));
        let macvlan = answer(&s, DockerDriver::Macvlan, "/Plugin.Activate", b"{}").unwrap();
        assert_eq!(macvlan["Implements"], json!(["NetworkDriver"]));
        assert!(answer(&s, DockerDriver::Macvlan, "/IpamDriver.RequestPool", b"{}").is_err());
        let overlay = answer(&s, DockerDriver::Overlay, "/Plugin.Activate", b"{}").unwrap();
        assert_eq!(overlay["Implements"], json!(["NetworkDriver"]));
        assert!(answer(
            &s,
            DockerDriver::Overlay,
            "/IpamDriver.RequestAddress",
            b"{}"
        )
        .is_err());
        // Ports of an overlay container are Docker's gateway network's to publish.
        let program = br#"{"NetworkID":"abc","EndpointID":"def","Options":{}}"#;
        let none = answer(
            &s,
            DockerDriver::Overlay,
            "/NetworkDriver.ProgramExternalConnectivity",
            program,
        )
        .unwrap();
        assert_eq!(none, json!({}));
        let caps = answer(
            &s,
            DockerDriver::Bridge,
            "/NetworkDriver.GetCapabilities",
            b"{}",
        )
        .unwrap();
        assert_eq!(caps["Scope"], "local");
    }

    #[test]
    fn unknown_calls_and_bad_bodies_are_errors_not_panics() {
        let s = state();
        assert!(answer(&s, DockerDriver::Bridge, "/NetworkDriver.Nope", b"{}").is_err());
        assert!(answer(&s, DockerDriver::Bridge, "/NetworkDriver.Join", b"not json").is_err());
        // Deleting what was never made succeeds, as Docker retries deletes.
        let gone = br#"{"NetworkID":"abc","EndpointID":"def"}"#;
        assert!(answer(
            &s,
            DockerDriver::Bridge,
            "/NetworkDriver.DeleteEndpoint",
            gone
        )
        .is_ok());
        assert!(answer(
            &s,
            DockerDriver::Bridge,
            "/NetworkDriver.DeleteNetwork",
            gone
        )
        .is_ok());
        assert!(answer(&s, DockerDriver::Bridge, "/NetworkDriver.Join", gone).is_err());
    }
}
