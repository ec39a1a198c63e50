//! Address ranges and range sets: a validated `[rangeStart, rangeEnd]` slice of a subnet with its gateway,
//! and the round-robin walk over a set of them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::error::IpamError;

/// One validated range: `start..=end` lies inside `subnet`, holds at least one address besides the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    subnet: IpNetwork,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
}

/// The addresses of one family as numbers, so v4 and v6 share one arithmetic.
fn to_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_number(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        // Callers only produce numbers inside a v4 subnet, so this never truncates.
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

impl AddressRange {
    /// Apply host-local's defaults and validate. `field` names the config location for error messages,
    /// e.g. `ranges[0][1]`.
    pub fn new(
        subnet: IpNetwork,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
        field: &str,
    ) -> Result<Self, IpamError> {
        let subnet = IpNetwork::new(subnet.network(), subnet.prefix())
            .map_err(|e| IpamError::config(format!("{field}.subnet"), e.to_string()))?;
        let v6 = subnet.is_ipv6();
        let max_prefix = if v6 { 128 } else { 32 };
        // v4 loses the network and broadcast addresses, v6 the subnet-router anycast address; the gateway
        // takes one more, so /31, /32, /127 and /128 leave nothing to hand out.
        if subnet.prefix() + 1 >= max_prefix {
            return Err(IpamError::config(
                format!("{field}.subnet"),
                format!(
                    "{subnet} has no usable addresses for containers; use a prefix of /{} or shorter",
                    max_prefix - 2
                ),
            ));
        }
        let network = to_number(subnet.network());
        let last = match subnet {
            IpNetwork::V4(n) => to_number(IpAddr::V4(n.broadcast())),
            IpNetwork::V6(n) => to_number(IpAddr::V6(n.broadcast())),
        };
        let first_usable = network + 1;
        let last_usable = if v6 { last } else { last - 1 };

        let check_inside = |ip: IpAddr, name: &str| -> Result<u128, IpamError> {
            let n = to_number(ip);
            if !same_family(ip, subnet.ip()) || n < first_usable || n > last_usable {
                return Err(IpamError::config(
                    format!("{field}.{name}"),
                    format!(
                        "{ip} is not a usable address of subnet {subnet} ({}-{}); pick one inside it",
                        from_number(first_usable, v6),
                        from_number(last_usable, v6)
                    ),
                ));
            }
            Ok(n)
        };
        let start_n = match start {
            Some(ip) => check_inside(ip, "rangeStart")?,
            None => first_usable,
        };
        let end_n = match end {
            Some(ip) => check_inside(ip, "rangeEnd")?,
            None => last_usable,
        };
        if start_n > end_n {
            return Err(IpamError::config(
                format!("{field}.rangeEnd"),
                format!(
                    "rangeEnd {} is before rangeStart {}; swap them",
                    from_number(end_n, v6),
                    from_number(start_n, v6)
                ),
            ));
        }
        // host-local: the gateway defaults to the first address after the network address.
        let gateway_n = match gateway {
            Some(ip) => check_inside(ip, "gateway")?,
            None => first_usable,
        };
        let range = AddressRange {
            subnet,
            start: from_number(start_n, v6),
            end: from_number(end_n, v6),
            gateway: from_number(gateway_n, v6),
        };
        if range.capacity() == 0 {
            return Err(IpamError::config(
                field.to_string(),
                format!("range {range} holds only its gateway; widen rangeStart..rangeEnd"),
            ));
        }
        Ok(range)
    }

    pub fn subnet(&self) -> IpNetwork {
        self.subnet
    }

    pub fn start(&self) -> IpAddr {
        self.start
    }

    pub fn end(&self) -> IpAddr {
        self.end
    }

    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    pub fn is_ipv6(&self) -> bool {
        self.subnet.is_ipv6()
    }

    /// Whether `ip` lies in `rangeStart..=rangeEnd` (the gateway included).
    pub fn contains(&self, ip: IpAddr) -> bool {
        same_family(ip, self.start)
            && (to_number(self.start)..=to_number(self.end)).contains(&to_number(ip))
    }

    /// Number of addresses this range can hand out (the gateway excluded).
    pub fn capacity(&self) -> u128 {
        let span = to_number(self.end) - to_number(self.start) + 1;
        if self.contains(self.gateway) {
            span - 1
        } else {
            span
        }
    }

    pub fn overlaps(&self, other: &AddressRange) -> bool {
        same_family(self.start, other.start)
            && to_number(self.start) <= to_number(other.end)
            && to_number(other.start) <= to_number(self.end)
    }

    /// The address with the subnet's prefix, as it goes into a CNI result.
    pub fn address_of(&self, ip: IpAddr) -> IpNetwork {
        // The prefix comes from a valid subnet of the same family, so this cannot fail.
        IpNetwork::new(ip, self.subnet.prefix()).expect("prefix of a validated subnet")
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}-{})", self.subnet, self.start, self.end)
    }
}

/// Ranges of one family that together yield one address per ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<AddressRange>,
    /// Which `last_reserved_ip.<slot>` of the store keeps this set's round-robin position; `None`: its index
    /// in the config (host-local's layout).
    round_robin_slot: Option<usize>,
}

impl RangeSet {
    /// Validate that the ranges are non-empty, of one family and disjoint. `field` is e.g. `ranges[1]`.
    pub fn new(ranges: Vec<AddressRange>, field: &str) -> Result<Self, IpamError> {
        let Some(first) = ranges.first() else {
            return Err(IpamError::config(
                field.to_string(),
                "empty range set; give it at least one {\"subnet\": ...}",
            ));
        };
        for (i, range) in ranges.iter().enumerate() {
            if range.is_ipv6() != first.is_ipv6() {
                return Err(IpamError::config(
                    format!("{field}[{i}]"),
                    format!(
                        "{range} is not of the same IP family as {first}; put each family in its own range set"
                    ),
                ));
            }
            if let Some(other) = ranges[..i].iter().find(|other| other.overlaps(range)) {
                return Err(IpamError::config(
                    format!("{field}[{i}]"),
                    format!("{range} overlaps {other} in the same range set"),
                ));
            }
        }
        Ok(RangeSet {
            ranges,
            round_robin_slot: None,
        })
    }

    /// This set keeps its round-robin position in `slot`: for a caller that hands out each family of one
    /// store through a config of its own (each would be set 0 there and overwrite the other's position).
    pub fn in_round_robin_slot(mut self, slot: usize) -> Self {
        self.round_robin_slot = Some(slot);
        self
    }

    /// Where this set, at `index` in its config, keeps its round-robin position.
    pub fn round_robin_slot(&self, index: usize) -> usize {
        self.round_robin_slot.unwrap_or(index)
    }

    pub fn ranges(&self) -> &[AddressRange] {
        &self.ranges
    }

    pub fn overlaps<'a>(
        &'a self,
        other: &'a RangeSet,
    ) -> Option<(&'a AddressRange, &'a AddressRange)> {
        self.ranges
            .iter()
            .flat_map(|a| other.ranges.iter().map(move |b| (a, b)))
            .find(|(a, b)| a.overlaps(b))
    }

    /// The range that holds `ip`, if any.
    pub fn range_of(&self, ip: IpAddr) -> Option<&AddressRange> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_of(ip).is_some()
    }

    pub fn is_gateway(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.gateway == ip)
    }

    pub fn capacity(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |sum, r| sum.saturating_add(r.capacity()))
    }

    /// Every address of the set exactly once (gateways included; the caller skips them), starting right
    /// after `last` and wrapping around: host-local's loose round-robin. An unknown `last` starts at the
    /// first range's start.
    pub fn walk_after(&self, last: Option<IpAddr>) -> RangeWalk<'_> {
        let (range, next) = match last.and_then(|ip| {
            self.ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|i| (i, ip))
        }) {
            Some((i, ip)) if ip == self.ranges[i].end => {
                let j = (i + 1) % self.ranges.len();
                (j, to_number(self.ranges[j].start))
            }
            Some((i, ip)) => (i, to_number(ip) + 1),
            None => (0, to_number(self.ranges[0].start)),
        };
        let remaining = self.ranges.iter().fold(0u128, |sum, r| {
            sum.saturating_add(to_number(r.end) - to_number(r.start) + 1)
        });
        RangeWalk {
            set: self,
            range,
            next,
            remaining,
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{r}")?;
        }
        write!(f, "]")
    }
}

/// Iterator of [`RangeSet::walk_after`].
pub struct RangeWalk<'a> {
    set: &'a RangeSet,
    range: usize,
    next: u128,
    remaining: u128,
}

impl Iterator for RangeWalk<'_> {
    type Item = IpAddr;

    fn next(&mut self) -> Option<IpAddr> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let range = &self.set.ranges[self.range];
        let ip = from_number(self.next, range.is_ipv6());
        if self.next == to_number(range.end) {
            self.range = (self.range + 1) % self.set.ranges.len();
            self.next = to_number(self.set.ranges[self.range].start);
        } else {
            self.next += 1;
        }
        Some(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(subnet: &str, start: Option<&str>, end: Option<&str>) -> AddressRange {
        AddressRange::new(
            subnet.parse().unwrap(),
            start.map(ip),
            end.map(ip),
            None,
            "r",
        )
        .unwrap()
    }

    #[test]
    fn v4_defaults_skip_network_and_broadcast_and_gateway_is_dot_one() {
        let r = range("10.88.0.0/24", None, None);
        assert_eq!(r.start(), ip("10.88.0.1"));
        assert_eq!(r.end(), ip("10.88.0.254"));
        assert_eq!(r.gateway(), ip("10.88.0.1"));
        assert_eq!(r.capacity(), 253);
    }

    #[test]
    fn v6_defaults_end_at_last_address() {
        let r = range("fd00::/120", None, None);
        assert_eq!(r.start(), ip("fd00::1"));
        assert_eq!(r.end(), ip("fd00::ff"));
        assert_eq!(r.capacity(), 254);
    }

    #[test]
    fn subnet_given_with_host_bits_is_normalised() {
        let r = range("10.88.3.7/16", None, None);
        assert_eq!(r.subnet().to_string(), "10.88.0.0/16");
    }

    #[test]
    fn tiny_subnets_are_refused() {
        for s in ["10.0.0.0/32", "10.0.0.0/31", "fd00::/128", "fd00::/127"] {
            let err =
                AddressRange::new(s.parse().unwrap(), None, None, None, "subnet").unwrap_err();
            assert!(
                err.to_string().contains("no usable addresses"),
                "{s}: {err}"
            );
        }
        assert_eq!(range("10.0.0.0/30", None, None).capacity(), 1);
    }

    #[test]
    fn range_bounds_outside_the_subnet_are_refused_naming_the_field() {
        let err = AddressRange::new(
            "10.0.0.0/24".parse().unwrap(),
            Some(ip("10.0.1.5")),
            None,
            None,
            "ranges[0][0]",
        )
        .unwrap_err();
        assert!(err.to_string().contains("ranges[0][0].rangeStart"), "{err}");
        let err = AddressRange::new(
            "10.0.0.0/24".parse().unwrap(),
            None,
            Some(ip("10.0.0.255")),
            None,
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("x.rangeEnd"), "{err}");
        let err = AddressRange::new(
            "10.0.0.0/24".parse().unwrap(),
            Some(ip("10.0.0.9")),
            Some(ip("10.0.0.3")),
            None,
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("before rangeStart"), "{err}");
        let err = AddressRange::new(
            "10.0.0.0/24".parse().unwrap(),
            None,
            None,
            Some(ip("fd00::1")),
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("x.gateway"), "{err}");
    }

    #[test]
    fn a_range_holding_only_its_gateway_is_refused() {
        let err = AddressRange::new(
            "10.0.0.0/24".parse().unwrap(),
            Some(ip("10.0.0.1")),
            Some(ip("10.0.0.1")),
            None,
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("only its gateway"), "{err}");
    }

    #[test]
    fn sets_refuse_mixed_families_and_overlaps() {
        let mixed = RangeSet::new(
            vec![
                range("10.0.0.0/24", None, None),
                range("fd00::/64", None, None),
            ],
            "ranges[0]",
        );
        assert!(mixed.unwrap_err().to_string().contains("same IP family"));
        let overlap = RangeSet::new(
            vec![
                range("10.0.0.0/16", None, None),
                range("10.0.5.0/24", None, None),
            ],
            "ranges[0]",
        );
        assert!(overlap.unwrap_err().to_string().contains("overlaps"));
        let disjoint = RangeSet::new(
            vec![
                range("10.0.0.0/24", Some("10.0.0.10"), Some("10.0.0.20")),
                range("10.0.0.0/24", Some("10.0.0.30"), Some("10.0.0.40")),
            ],
            "ranges[0]",
        );
        assert!(disjoint.is_ok());
    }

    #[test]
    fn walk_starts_after_last_and_wraps_across_ranges() {
        let set = RangeSet::new(
            vec![
                range("10.0.0.0/24", Some("10.0.0.10"), Some("10.0.0.11")),
                range("10.0.1.0/24", Some("10.0.1.5"), Some("10.0.1.6")),
            ],
            "s",
        )
        .unwrap();
        let walk: Vec<String> = set
            .walk_after(Some(ip("10.0.0.11")))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(walk, ["10.0.1.5", "10.0.1.6", "10.0.0.10", "10.0.0.11"]);
        let walk: Vec<String> = set.walk_after(None).map(|a| a.to_string()).collect();
        assert_eq!(walk, ["10.0.0.10", "10.0.0.11", "10.0.1.5", "10.0.1.6"]);
        let walk: Vec<String> = set
            .walk_after(Some(ip("192.168.0.1")))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(walk[0], "10.0.0.10");
        let walk: Vec<String> = set
            .walk_after(Some(ip("10.0.1.6")))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(walk[0], "10.0.0.10");
    }

    #[test]
    fn huge_v6_ranges_walk_lazily() {
        let set = RangeSet::new(vec![range("fd00::/64", None, None)], "s").unwrap();
        assert_eq!(set.capacity(), (1u128 << 64) - 2);
        assert_eq!(set.walk_after(None).nth(2), Some(ip("fd00::3")));
    }
}
