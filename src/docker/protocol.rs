//! The JSON bodies of Docker's legacy plugin API (libnetwork's remote network and IPAM drivers), parsed at
//! the edge into these types. Field names are Docker's; the network driver's error field is `Err`, the IPAM
//! driver's `Error`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use ipnetwork::IpNetwork;

use crate::error::Error;
use crate::link::MacAddr;

/// `Options` of a request: Docker sends `null` for an empty map.
pub type Options = Option<HashMap<String, Value>>;

/// One IPv4 or IPv6 pool of a network, as Docker hands it to CreateNetwork.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    /// The pool, `172.18.0.0/16`.
    #[serde(default)]
    pub pool: String,
    /// CIDR form: `172.18.0.1/16`.
    #[serde(default)]
    pub gateway: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(default)]
    pub options: Options,
    #[serde(default, rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(default, rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

fn parse_cidr(what: &str, text: &str) -> Result<IpNetwork, Error> {
    text.parse().map_err(|e| {
        Error::config(format!(
            "{what} {text:?} is not an address with a prefix: {e}"
        ))
    })
}

impl CreateNetworkRequest {
    /// The gateways of the network's pools, with their prefix; refused when there is none.
    pub fn gateways(&self) -> Result<Vec<IpNetwork>, Error> {
        let mut out = Vec::new();
        for data in self.ipv4_data.iter().chain(&self.ipv6_data).flatten() {
            if !data.gateway.is_empty() {
                out.push(parse_cidr("gateway", &data.gateway)?);
            }
        }
        if out.is_empty() {
            return Err(Error::config(
                "the network has no gateway address; give --subnet (and --gateway) or use an IPAM driver that hands one out",
            ));
        }
        Ok(out)
    }
}

impl EndpointInterface {
    /// The endpoint's addresses; refused when Docker sent none.
    pub fn addresses(&self) -> Result<Vec<IpNetwork>, Error> {
        let mut out = Vec::new();
        for text in [&self.address, &self.address_ipv6] {
            if !text.is_empty() {
                out.push(parse_cidr("endpoint address", text)?);
            }
        }
        if out.is_empty() {
            return Err(Error::config(
                "Docker sent the endpoint no address; the network needs an IPAM driver (the default, or --ipam-driver tether)",
            ));
        }
        Ok(out)
    }

    /// The MAC Docker asked for, if any.
    pub fn mac(&self) -> Result<Option<MacAddr>, Error> {
        if self.mac_address.is_empty() {
            return Ok(None);
        }
        self.mac_address
            .parse::<MacAddr>()
            .map(Some)
            .map_err(|e| Error::config(format!("MAC address {:?}: {e}", self.mac_address)))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(
        default,
        rename = "AddressIPv6",
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub interface: Option<EndpointInterface>,
}

/// DeleteEndpoint, EndpointOperInfo, Leave, RevokeExternalConnectivity.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExternalConnectivityRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub options: Options,
}

/// One `-p` mapping in `com.docker.network.portmap` (Proto is the IP protocol number).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPortBinding {
    pub proto: u8,
    pub port: u16,
    #[serde(default, rename = "HostIP")]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: u16,
    #[serde(default)]
    pub host_port_end: u16,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    pub src_name: String,
    pub dst_prefix: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinResponse {
    pub interface_name: InterfaceName,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
    pub disable_gateway_service: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPoolRequest {
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub sub_pool: String,
    #[serde(default, rename = "V6")]
    pub v6: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleasePoolRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub options: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
}

/// Which of the two APIs a failure is reported in: they name the error field differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Plugin,
    Network,
    Ipam,
}

impl Api {
    /// The API a request path belongs to (`/NetworkDriver.Join` -> Network).
    pub fn of_path(path: &str) -> Api {
        if path.starts_with("/IpamDriver.") {
            Api::Ipam
        } else if path.starts_with("/NetworkDriver.") {
            Api::Network
        } else {
            Api::Plugin
        }
    }

    /// The reply carrying `message` as this API's error.
    pub fn error_body(self, message: &str) -> Value {
        match self {
            Api::Ipam => serde_json::json!({ "Error": message }),
            Api::Network | Api::Plugin => serde_json::json!({ "Err": message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_differ_between_the_apis() {
        assert_eq!(
            Api::of_path("/IpamDriver.RequestPool").error_body("x")["Error"],
            "x"
        );
        assert_eq!(
            Api::of_path("/NetworkDriver.Join").error_body("x")["Err"],
            "x"
        );
    }

    #[test]
    fn docker_requests_parse_with_nulls() {
        let r: CreateNetworkRequest = serde_json::from_str(
            r#"{"NetworkID":"abc","Options":{"com.docker.network.generic":{"mtu":"1400"}},
                "IPv4Data":[{"AddressSpace":"x","Pool":"10.9.0.0/24","Gateway":"10.9.0.1/24","AuxAddresses":null}],
                "IPv6Data":null}"#,
        )
        .unwrap();
        assert_eq!(r.ipv4_data.unwrap()[0].gateway, "10.9.0.1/24");
        let e: CreateEndpointRequest = serde_json::from_str(
            r#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.9.0.2/24","AddressIPv6":"","MacAddress":""},"Options":null}"#,
        )
        .unwrap();
        assert_eq!(e.interface.unwrap().address, "10.9.0.2/24");
        let p: DockerPortBinding = serde_json::from_str(
            r#"{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}"#,
        )
        .unwrap();
        assert_eq!((p.proto, p.port, p.host_port), (6, 80, 8080));
    }
}
