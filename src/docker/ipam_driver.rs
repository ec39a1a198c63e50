//! The IPAM driver `tether`: pools and addresses for Docker, on tether's IPAM store (one store per pool, a
//! lease file per address) and the automatic subnet choice of `tether network create`.
//!
//! An automatic pool never overlaps a pool in use, a tether CNI network or a route of the host: dockerd asks
//! again, without end, when the pool it gets overlaps one of its networks.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{json, Value};

use super::overlay_driver;
use super::protocol::{RequestAddressRequest, RequestPoolRequest};
use super::records::{DockerState, PoolRecord};
use crate::error::Error;
use crate::ipam::{AddressRange, AttachmentId, RangeSet, Store};
use crate::network::{first_overlap, pick_v4, pick_v6, Networks, Occupied};

pub const LOCAL_ADDRESS_SPACE: &str = "tether-local";
pub const GLOBAL_ADDRESS_SPACE: &str = "tether-global";
/// `RequestAddressType` of the address Docker puts on the bridge.
const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

pub fn capabilities() -> Value {
    json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false })
}

pub fn default_address_spaces() -> Value {
    json!({
        "LocalDefaultAddressSpace": LOCAL_ADDRESS_SPACE,
        "GlobalDefaultAddressSpace": GLOBAL_ADDRESS_SPACE,
    })
}

fn parse_net(what: &str, text: &str) -> Result<IpNetwork, Error> {
    let net: IpNetwork = text
        .parse()
        .map_err(|e| Error::config(format!("{what} {text:?} is not a CIDR subnet: {e}")))?;
    Ok(IpNetwork::new(net.network(), net.prefix()).expect("same prefix"))
}

/// A file-name-safe id that names the pool (and its range).
fn pool_id(pool: IpNetwork, sub_pool: Option<IpNetwork>) -> String {
    let clean = |n: IpNetwork| -> String {
        n.to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { 'x' })
            .collect()
    };
    match sub_pool {
        Some(sub) => format!("tp{}r{}", clean(pool), clean(sub)),
        None => format!("tp{}", clean(pool)),
    }
}

/// Everything an automatic pool must keep clear of.
fn occupied(pools: &[PoolRecord]) -> Result<Vec<Occupied>, Error> {
    let around = Networks::from_env()
        .surroundings()
        .map_err(|e| Error::io(format!("cannot list the host's routes and networks: {e}")))?;
    let mut out: Vec<Occupied> = around.routes.into_iter().chain(around.networks).collect();
    out.extend(pools.iter().map(|p| Occupied {
        net: p.pool,
        what: format!("tether pool {} in use", p.pool),
    }));
    Ok(out)
}

pub fn request_pool(state: &DockerState, req: &RequestPoolRequest) -> Result<Value, Error> {
    let pools = state.pools()?;
    let pool = if req.pool.is_empty() {
        let taken = occupied(&pools)?;
        let picked = if req.v6 {
            let seed = format!("docker-{}", pools.len());
            pick_v6(&seed, &taken).map(IpNetwork::V6)
        } else {
            pick_v4(&taken).map(IpNetwork::V4)
        };
        picked.ok_or_else(|| {
            Error::not_available(
                "every automatic pool overlaps a route or a network of this host; give --subnet",
            )
        })?
    } else {
        let pool = parse_net("pool", &req.pool)?;
        let in_use: Vec<Occupied> = pools
            .iter()
            .map(|p| Occupied {
                net: p.pool,
                what: format!("pool {} in use", p.pool),
            })
            .collect();
        if let Some(other) = first_overlap(pool, &in_use) {
            return Err(Error::config(format!(
                "subnet {pool} overlaps {}; pick another subnet",
                other.what
            )));
        }
        pool
    };
    let sub_pool = match req.sub_pool.as_str() {
        "" => None,
        text => {
            let sub = parse_net("--ip-range", text)?;
            if !(pool.contains(sub.network()) && sub.prefix() >= pool.prefix()) {
                return Err(Error::config(format!(
                    "--ip-range {sub} is not inside subnet {pool}"
                )));
            }
            Some(sub)
        }
    };
    let rec = PoolRecord {
        id: pool_id(pool, sub_pool),
        pool,
        sub_pool,
    };
    range_of(&rec)?; // refuse a pool with no address for a container before Docker keeps it
    state.write_pool(&rec)?;
    tracing::info!(pool = %pool, id = %rec.id, "docker: pool requested");
    Ok(json!({ "PoolID": rec.id, "Pool": pool.to_string(), "Data": {} }))
}

pub fn release_pool(state: &DockerState, pool_id: &str) -> Result<Value, Error> {
    if let Some(store) = Store::existing(&state.ipam_dir(), pool_id)? {
        std::fs::remove_dir_all(store.dir()).map_err(|e| {
            Error::io(format!(
                "removing the address store {}: {e}",
                store.dir().display()
            ))
        })?;
    }
    state.remove_pool(pool_id)?;
    Ok(json!({}))
}

/// The addresses a pool hands out: the sub-pool when given (`--ip-range`), else the whole subnet.
fn range_of(pool: &PoolRecord) -> Result<RangeSet, Error> {
    let (start, end) = match (pool.sub_pool, pool.pool) {
        (Some(IpNetwork::V4(sub)), IpNetwork::V4(_)) => (
            Some(IpAddr::V4(sub.network())),
            Some(IpAddr::V4(sub.broadcast())),
        ),
        (Some(IpNetwork::V6(sub)), IpNetwork::V6(_)) => (
            Some(IpAddr::V6(sub.network())),
            Some(IpAddr::V6(sub.broadcast())),
        ),
        _ => (None, None),
    };
    // The range's own checks drop the subnet's network and broadcast addresses when the range touches them.
    let clamp = |ip: Option<IpAddr>, edge: IpAddr| ip.filter(|ip| *ip != edge);
    let (first, last) = match pool.pool {
        IpNetwork::V4(n) => (IpAddr::V4(n.network()), IpAddr::V4(n.broadcast())),
        IpNetwork::V6(n) => (IpAddr::V6(n.network()), IpAddr::V6(n.broadcast())),
    };
    let range = AddressRange::new(
        pool.pool,
        clamp(start, first),
        clamp(end, last),
        None,
        "pool",
    )?;
    Ok(RangeSet::new(vec![range], "pool")?)
}

fn parse_ip(text: &str) -> Result<IpAddr, Error> {
    let bare = text.split('/').next().unwrap_or(text);
    bare.parse()
        .map_err(|_| Error::config(format!("{text:?} is not an IP address")))
}

fn unknown_pool(pool_id: &str) -> Error {
    Error::config(format!(
        "pool {pool_id} is not known to tether's IPAM driver (its record is gone); remove the network and create it again"
    ))
}

pub fn request_address(state: &DockerState, req: &RequestAddressRequest) -> Result<Value, Error> {
    let pool = state
        .pool(&req.pool_id)?
        .ok_or_else(|| unknown_pool(&req.pool_id))?;
    let ranges = range_of(&pool)?;
    let gateway_request = req
        .options
        .as_ref()
        .and_then(|o| o.get("RequestAddressType"))
        .is_some_and(|t| t == GATEWAY_REQUEST);
    if !gateway_request {
        if let Some(net) = overlay_driver::network_on_pool(state, pool.pool)? {
            if !req.address.is_empty() {
                return Err(Error::unsupported(
                    "tether-overlay hands out addresses from this host's blocks of the subnet; \
                     leave out --ip",
                ));
            }
            let address = overlay_driver::lease_address(&net)?;
            return Ok(json!({ "Address": address.to_string(), "Data": {} }));
        }
    }
    let store = Store::open(&state.ipam_dir(), &pool.id)?;
    let locked = store.lock()?;
    let lease = |ip: IpAddr| -> Result<bool, Error> {
        let owner = AttachmentId::new("docker", &ip.to_string())?;
        Ok(locked.create_lease(ip, &owner)?)
    };
    let ip = if !req.address.is_empty() || gateway_request {
        let ip = if req.address.is_empty() {
            ranges.ranges()[0].gateway()
        } else {
            parse_ip(&req.address)?
        };
        if !pool.pool.contains(ip) {
            return Err(Error::config(format!(
                "address {ip} is not in pool {}",
                pool.pool
            )));
        }
        if !lease(ip)? {
            return Err(Error::config(format!(
                "address {ip} is already in use in pool {}; pick another",
                pool.pool
            )));
        }
        ip
    } else {
        let last = locked.last_reserved(0)?;
        let mut chosen = None;
        for ip in ranges.walk_after(last) {
            if ranges.is_gateway(ip) {
                continue;
            }
            if lease(ip)? {
                chosen = Some(ip);
                break;
            }
        }
        let ip = chosen.ok_or_else(|| {
            Error::not_available(format!("pool {} has no free address left", pool.pool))
        })?;
        locked.set_last_reserved(0, ip)?;
        ip
    };
    let address = IpNetwork::new(ip, pool.pool.prefix()).expect("prefix of the pool");
    Ok(json!({ "Address": address.to_string(), "Data": {} }))
}

pub fn release_address(state: &DockerState, pool_id: &str, address: &str) -> Result<Value, Error> {
    let ip = parse_ip(address)?;
    if let Some(pool) = state.pool(pool_id)? {
        if let Some(net) = overlay_driver::network_on_pool(state, pool.pool)? {
            if overlay_driver::release_lease(&net, ip)? {
                return Ok(json!({}));
            }
        }
    }
    if let Some(store) = Store::existing(&state.ipam_dir(), pool_id)? {
        store.lock()?.remove_lease(ip)?;
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids_are_file_names() {
        let id = pool_id("10.9.0.0/24".parse().unwrap(), None);
        assert_eq!(id, "tp10x9x0x0x24");
        assert!(pool_id(
            "fd00::/64".parse().unwrap(),
            Some("fd00::/80".parse().unwrap())
        )
        .bytes()
        .all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn a_sub_pool_limits_the_range() {
        let rec = PoolRecord {
            id: "x".into(),
            pool: "10.9.0.0/16".parse().unwrap(),
            sub_pool: Some("10.9.5.0/24".parse().unwrap()),
        };
        let set = range_of(&rec).unwrap();
        assert_eq!(set.ranges()[0].start().to_string(), "10.9.5.0");
        assert_eq!(set.ranges()[0].end().to_string(), "10.9.5.255");
        let whole = PoolRecord {
            sub_pool: None,
            ..rec
        };
        let set = range_of(&whole).unwrap();
        assert_eq!(set.ranges()[0].gateway().to_string(), "10.9.0.1");
    }
}
