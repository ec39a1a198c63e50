//! Picking a subnet for a network created without `--subnet`, as Docker does: the first of
//! 172.17.0.0/16 .. 172.31.0.0/16, then 192.168.0.0/20 .. 192.168.240.0/20, that overlaps neither a
//! route of the host nor another network. IPv6 gets a ULA /64 (RFC 4193) whose global id is a hash
//! of the network name.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

/// Something a new subnet must not overlap, with a label for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupied {
    pub net: IpNetwork,
    pub what: String,
}

pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    match (a, b) {
        (IpNetwork::V4(a), IpNetwork::V4(b)) => a.contains(b.network()) || b.contains(a.network()),
        (IpNetwork::V6(a), IpNetwork::V6(b)) => a.contains(b.network()) || b.contains(a.network()),
        _ => false,
    }
}

/// What `subnet` overlaps, if anything. Default routes (prefix 0) overlap everything and are no
/// reason to refuse a subnet.
pub fn first_overlap(subnet: IpNetwork, occupied: &[Occupied]) -> Option<&Occupied> {
    occupied
        .iter()
        .filter(|o| o.net.prefix() > 0)
        .find(|o| overlaps(subnet, o.net))
}

/// Docker's default address pools, in order.
pub fn candidate_pools() -> impl Iterator<Item = Ipv4Network> {
    let big = (17..=31u8).map(|b| Ipv4Network::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let small = (0..16u8).map(|i| Ipv4Network::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    big.chain(small).map(|n| n.expect("valid prefix"))
}

/// The first free IPv4 pool.
pub fn pick_v4(occupied: &[Occupied]) -> Option<Ipv4Network> {
    candidate_pools().find(|pool| first_overlap(IpNetwork::V4(*pool), occupied).is_none())
}

/// A ULA /64 for `network`: fd + 40 hash bits + subnet id 0; rehashed with a counter when taken.
pub fn pick_v6(network: &str, occupied: &[Occupied]) -> Option<Ipv6Network> {
    (0..64u32).find_map(|attempt| {
        let seed = if attempt == 0 {
            network.to_string()
        } else {
            format!("{network}#{attempt}")
        };
        let id = super::name::fnv1a(&seed) & 0xff_ffff_ffff;
        let bits: u128 = (0xfdu128 << 120) | (u128::from(id) << 80);
        let net = Ipv6Network::new(Ipv6Addr::from(bits), 64).expect("valid prefix");
        first_overlap(IpNetwork::V6(net), occupied)
            .is_none()
            .then_some(net)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occ(text: &str) -> Occupied {
        Occupied {
            net: text.parse().unwrap(),
            what: format!("route {text}"),
        }
    }

    #[test]
    fn empty_host_gets_172_17() {
        assert_eq!(pick_v4(&[]).unwrap().to_string(), "172.17.0.0/16");
    }

    #[test]
    fn routes_and_networks_are_skipped_default_route_is_not() {
        let taken = [
            occ("0.0.0.0/0"),
            occ("172.17.0.0/16"),
            occ("172.18.5.0/24"),
            occ("172.16.0.0/12"),
        ];
        // 172.16.0.0/12 covers every 172.17-31 pool: the /20s of 192.168 come next.
        assert_eq!(pick_v4(&taken).unwrap().to_string(), "192.168.0.0/20");
        let taken = [
            occ("172.17.0.0/16"),
            occ("172.18.5.0/24"),
            occ("172.19.0.1/32"),
        ];
        assert_eq!(pick_v4(&taken).unwrap().to_string(), "172.20.0.0/16");
        let taken = [
            occ("172.17.0.0/16"),
            occ("172.0.0.0/8"),
            occ("192.168.0.0/19"),
        ];
        assert_eq!(pick_v4(&taken).unwrap().to_string(), "192.168.32.0/20");
    }

    #[test]
    fn every_pool_taken_gives_none() {
        assert_eq!(pick_v4(&[occ("172.0.0.0/8"), occ("192.168.0.0/16")]), None);
        assert_eq!(candidate_pools().count(), 31);
    }

    #[test]
    fn ula_is_stable_per_name_and_avoids_taken() {
        let a = pick_v6("web", &[]).unwrap();
        assert_eq!(a, pick_v6("web", &[]).unwrap());
        assert_eq!(a.prefix(), 64);
        assert_eq!(a.network().segments()[0] >> 8, 0xfd);
        assert_ne!(a, pick_v6("db", &[]).unwrap());
        let taken = [Occupied {
            net: IpNetwork::V6(a),
            what: "x".into(),
        }];
        let b = pick_v6("web", &taken).unwrap();
        assert_ne!(a, b);
        // A default v6 route is no obstacle.
        assert_eq!(pick_v6("web", &[occ("::/0")]).unwrap(), a);
    }

    #[test]
    fn overlap_is_symmetric_and_per_family() {
        let a: IpNetwork = "10.0.0.0/8".parse().unwrap();
        let b: IpNetwork = "10.1.2.0/24".parse().unwrap();
        assert!(overlaps(a, b) && overlaps(b, a));
        assert!(!overlaps(a, "11.0.0.0/8".parse().unwrap()));
        assert!(!overlaps(a, "::/0".parse().unwrap()));
    }
}
