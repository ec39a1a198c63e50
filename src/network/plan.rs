//! From what the user asked (`network create` flags) to a validated [`NetworkPlan`]: subnets picked
//! or checked against what is occupied, gateways and ranges placed, the VXLAN id chosen. Pure, so
//! every rule is unit-tested with given routes and networks.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::error::NetworkError;
use super::options::{self, DriverKind, DriverOptions};
use super::pool::{self, Occupied};
use super::render::{Addressing, NetworkPlan};

/// `tether network create`'s flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRequest {
    pub name: String,
    /// `bridge` (default), `macvlan` or `overlay`.
    pub driver: String,
    pub subnets: Vec<IpNetwork>,
    pub gateway: Option<IpAddr>,
    pub ip_range: Option<IpNetwork>,
    pub ipv6: bool,
    pub internal: bool,
    /// `-o key=value`, in order.
    pub options: Vec<(String, String)>,
}

/// What the host already uses: its routes, and the subnets and VXLAN ids of the other networks.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    pub routes: Vec<Occupied>,
    pub networks: Vec<Occupied>,
    pub vnis: Vec<(u32, String)>,
}

/// The lowest VXLAN id tether picks by itself; below it ids are left to people.
pub const FIRST_AUTO_VNI: u32 = 4096;

pub fn plan(req: &CreateRequest, around: &Surroundings) -> Result<NetworkPlan, NetworkError> {
    super::name::validate(&req.name)?;
    let driver: DriverKind = if req.driver.is_empty() {
        DriverKind::Bridge
    } else {
        req.driver.parse()?
    };
    let options = options::parse(driver, &req.options)?;

    let mut subnets = requested_subnets(req, around)?;
    let occupied: Vec<Occupied> = around
        .routes
        .iter()
        .chain(&around.networks)
        .cloned()
        .collect();
    if !subnets.iter().any(IpNetwork::is_ipv4) {
        let picked = pool::pick_v4(&occupied).ok_or(NetworkError::PoolsExhausted)?;
        subnets.insert(0, IpNetwork::V4(picked));
    }
    if req.ipv6 && !subnets.iter().any(IpNetwork::is_ipv6) {
        let picked = pool::pick_v6(&req.name, &occupied).ok_or(NetworkError::PoolsExhausted)?;
        subnets.push(IpNetwork::V6(picked));
    }

    check_gateway_and_range(req, &subnets)?;

    let addressing = subnets
        .iter()
        .map(|&subnet| {
            let gateway = req
                .gateway
                .filter(|g| subnet.contains(*g))
                .unwrap_or_else(|| nth(subnet, 1));
            if gateway == subnet.network() {
                return Err(NetworkError::BadAddressing {
                    what: format!(
                        "gateway {gateway} is the network address of {subnet}; use a host address"
                    ),
                });
            }
            let range = req
                .ip_range
                .filter(|r| subnet.contains(r.network()))
                .map(|r| usable_range(subnet, r));
            Ok(Addressing {
                subnet,
                gateway,
                range,
            })
        })
        .collect::<Result<Vec<_>, NetworkError>>()?;

    let vni = match &options {
        DriverOptions::Overlay(o) => Some(pick_vni(o.vni, &around.vnis)?),
        _ => None,
    };
    Ok(NetworkPlan {
        name: req.name.clone(),
        options,
        addressing,
        internal: req.internal,
        vni,
    })
}

/// The `--subnet`s asked for, each normalised (10.1.2.3/24 means 10.1.2.0/24), at most one per family, big
/// enough, and clear of other networks.
fn requested_subnets(
    req: &CreateRequest,
    around: &Surroundings,
) -> Result<Vec<IpNetwork>, NetworkError> {
    let mut subnets: Vec<IpNetwork> = Vec::new();
    for subnet in &req.subnets {
        let subnet = IpNetwork::new(subnet.network(), subnet.prefix()).expect("same prefix");
        if subnets.iter().any(|s| s.is_ipv4() == subnet.is_ipv4()) {
            return Err(NetworkError::BadAddressing {
                what: format!("more than one --subnet of the IPv{} family; give at most one IPv4 and one IPv6 subnet", if subnet.is_ipv4() { 4 } else { 6 }),
            });
        }
        let too_small = if subnet.is_ipv4() {
            subnet.prefix() > 30
        } else {
            subnet.prefix() > 126
        };
        if too_small {
            return Err(NetworkError::BadAddressing {
                what: format!("subnet {subnet} is too small for a gateway and a container; use /30 or larger (/126 for IPv6)"),
            });
        }
        // Explicit subnets are checked against other networks only, as Docker does: a host route
        // that covers them may be exactly what the user wants to shadow.
        if let Some(other) = pool::first_overlap(subnet, &around.networks) {
            return Err(NetworkError::Overlap {
                subnet,
                other: other.what.clone(),
            });
        }
        subnets.push(subnet);
    }
    Ok(subnets)
}

/// `--gateway` and `--ip-range` must fall inside one of the subnets.
fn check_gateway_and_range(req: &CreateRequest, subnets: &[IpNetwork]) -> Result<(), NetworkError> {
    if let Some(gateway) = req.gateway {
        if !subnets.iter().any(|s| s.contains(gateway)) {
            return Err(NetworkError::BadAddressing {
                what: format!(
                    "gateway {gateway} is in none of the subnets ({}); pick an address inside one",
                    list(subnets)
                ),
            });
        }
    }
    if let Some(range) = req.ip_range {
        if !subnets
            .iter()
            .any(|s| s.contains(range.network()) && s.prefix() <= range.prefix())
        {
            return Err(NetworkError::BadAddressing {
                what: format!(
                    "--ip-range {range} is not inside a subnet ({}); give a range inside one",
                    list(subnets)
                ),
            });
        }
    }

    Ok(())
}

fn list(subnets: &[IpNetwork]) -> String {
    subnets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((bits as u32).into())
    } else {
        IpAddr::V6(bits.into())
    }
}

/// The `n`th address of `subnet`.
fn nth(subnet: IpNetwork, n: u128) -> IpAddr {
    from_bits(to_bits(subnet.network()) + n, subnet.is_ipv4())
}

/// `--ip-range` as rangeStart/rangeEnd, without the subnet's network and (IPv4) broadcast address.
fn usable_range(subnet: IpNetwork, range: IpNetwork) -> (IpAddr, IpAddr) {
    let v4 = subnet.is_ipv4();
    let host_bits = u32::from(if v4 { 32 } else { 128 } - range.prefix());
    let first = to_bits(range.network());
    let last = first + ((1u128 << host_bits) - 1);
    let subnet_first = to_bits(subnet.network());
    let subnet_last =
        subnet_first + ((1u128 << u32::from(if v4 { 32 } else { 128 } - subnet.prefix())) - 1);
    let start = first.max(subnet_first + 1);
    let end = if v4 && last == subnet_last {
        last - 1
    } else {
        last
    };
    (from_bits(start, v4), from_bits(end.max(start), v4))
}

fn pick_vni(asked: Option<u32>, used: &[(u32, String)]) -> Result<u32, NetworkError> {
    if let Some(vni) = asked {
        if let Some((_, other)) = used.iter().find(|(v, _)| *v == vni) {
            return Err(NetworkError::VniTaken {
                vni,
                other: other.clone(),
            });
        }
        return Ok(vni);
    }
    (FIRST_AUTO_VNI..(1 << 24))
        .find(|vni| !used.iter().any(|(v, _)| v == vni))
        .ok_or(NetworkError::VniExhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.into(),
            ..CreateRequest::default()
        }
    }

    fn occ(text: &str, what: &str) -> Occupied {
        Occupied {
            net: text.parse().unwrap(),
            what: what.into(),
        }
    }

    #[test]
    fn auto_subnet_skips_routes_and_networks() {
        let around = Surroundings {
            routes: vec![occ("0.0.0.0/0", "default"), occ("172.17.0.0/16", "route")],
            networks: vec![occ("172.18.0.0/16", "network a")],
            vnis: vec![],
        };
        let plan = plan(&req("web"), &around).unwrap();
        assert_eq!(plan.addressing.len(), 1);
        assert_eq!(plan.addressing[0].subnet.to_string(), "172.19.0.0/16");
        assert_eq!(plan.addressing[0].gateway.to_string(), "172.19.0.1");
    }

    #[test]
    fn explicit_subnet_gateway_and_range() {
        let r = CreateRequest {
            subnets: vec!["10.5.0.7/24".parse().unwrap()],
            gateway: Some("10.5.0.254".parse().unwrap()),
            ip_range: Some("10.5.0.128/25".parse().unwrap()),
            ..req("web")
        };
        let plan = plan(&r, &Surroundings::default()).unwrap();
        let a = &plan.addressing[0];
        assert_eq!(a.subnet.to_string(), "10.5.0.0/24");
        assert_eq!(a.gateway.to_string(), "10.5.0.254");
        let (start, end) = a.range.unwrap();
        assert_eq!(
            (start.to_string(), end.to_string()),
            ("10.5.0.128".into(), "10.5.0.254".into())
        );
    }

    #[test]
    fn ipv6_flag_adds_a_ula() {
        let r = CreateRequest {
            ipv6: true,
            ..req("web")
        };
        let plan = plan(&r, &Surroundings::default()).unwrap();
        assert_eq!(plan.addressing.len(), 2);
        assert!(plan.addressing[1].subnet.is_ipv6());
        assert_eq!(plan.addressing[1].subnet.prefix(), 64);
    }

    #[test]
    fn refusals() {
        let around = Surroundings {
            networks: vec![occ("10.0.0.0/16", "network other (10.0.0.0/16)")],
            ..Surroundings::default()
        };
        let cases: Vec<(CreateRequest, &str)> = vec![
            (
                CreateRequest {
                    subnets: vec!["10.0.5.0/24".parse().unwrap()],
                    ..req("a")
                },
                "overlaps network other",
            ),
            (
                CreateRequest {
                    driver: "ipvlan".into(),
                    ..req("a")
                },
                "unknown driver",
            ),
            (req("bad name"), "invalid network name"),
            (req("host"), "reserved"),
            (
                CreateRequest {
                    subnets: vec!["10.9.0.0/24".parse().unwrap()],
                    gateway: Some("10.8.0.1".parse().unwrap()),
                    ..req("a")
                },
                "in none of the subnets",
            ),
            (
                CreateRequest {
                    subnets: vec!["10.9.0.0/24".parse().unwrap()],
                    ip_range: Some("10.9.1.0/25".parse().unwrap()),
                    ..req("a")
                },
                "not inside a subnet",
            ),
            (
                CreateRequest {
                    subnets: vec![
                        "10.9.0.0/24".parse().unwrap(),
                        "10.10.0.0/24".parse().unwrap(),
                    ],
                    ..req("a")
                },
                "more than one",
            ),
            (
                CreateRequest {
                    subnets: vec!["10.9.0.0/31".parse().unwrap()],
                    ..req("a")
                },
                "too small",
            ),
            (
                CreateRequest {
                    subnets: vec!["10.9.0.0/24".parse().unwrap()],
                    gateway: Some("10.9.0.0".parse().unwrap()),
                    ..req("a")
                },
                "network address",
            ),
        ];
        for (r, why) in cases {
            let err = plan(&r, &around).unwrap_err().to_string();
            assert!(err.contains(why), "{r:?}: {err}");
        }
    }

    #[test]
    fn overlay_vni_lowest_free_from_4096() {
        let r = CreateRequest {
            driver: "overlay".into(),
            ..req("ov")
        };
        let around = Surroundings {
            vnis: vec![(4096, "a".into()), (4098, "b".into())],
            ..Surroundings::default()
        };
        assert_eq!(plan(&r, &around).unwrap().vni, Some(4097));
        let r = CreateRequest {
            options: vec![("vni".into(), "4098".into())],
            ..r
        };
        assert!(matches!(
            plan(&r, &around),
            Err(NetworkError::VniTaken { .. })
        ));
    }
}
