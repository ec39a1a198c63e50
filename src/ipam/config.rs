//! The `ipam` object of a network config, host-local compatible, parsed once into validated types.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::Value;

use super::error::IpamError;
use super::range::{AddressRange, RangeSet};

/// A route handed to the container; `gw: None` means "via the interface's gateway" (CNI result semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// One address per set per ADD, in config order.
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<RouteSpec>,
    /// Parent of the per-network store directories.
    pub data_dir: PathBuf,
    /// Host file whose nameservers/search/options go into the result's DNS, if set.
    pub resolv_conf: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: Option<String>,
    gw: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(flatten)]
    shorthand: RawRange,
    #[serde(default)]
    routes: Vec<RawRoute>,
    data_dir: Option<String>,
    resolv_conf: Option<String>,
}

fn parse_ip(text: &str, field: &str) -> Result<IpAddr, IpamError> {
    text.trim().parse().map_err(|_| {
        IpamError::config(
            field,
            format!("{text:?} is not an IP address; write it like \"10.88.0.1\" or \"fd00::1\""),
        )
    })
}

fn parse_cidr(text: &str, field: &str) -> Result<IpNetwork, IpamError> {
    let text = text.trim();
    // ipnetwork reads a bare address as a host prefix; a subnet without a prefix is a typo here.
    if !text.contains('/') {
        return Err(IpamError::config(
            field,
            format!("{text:?} has no prefix length; write it like \"10.88.0.0/16\""),
        ));
    }
    text.parse().map_err(|e: ipnetwork::IpNetworkError| {
        IpamError::config(
            field,
            format!("{text:?} is not a CIDR ({e}); write it like \"10.88.0.0/16\""),
        )
    })
}

fn parse_range(raw: &RawRange, field: &str) -> Result<AddressRange, IpamError> {
    let subnet = raw.subnet.as_deref().ok_or_else(|| {
        IpamError::config(
            format!("{field}.subnet"),
            "missing; every range needs a subnet",
        )
    })?;
    let subnet = parse_cidr(subnet, &format!("{field}.subnet"))?;
    let ip = |value: &Option<String>, name: &str| {
        value
            .as_deref()
            .map(|v| parse_ip(v, &format!("{field}.{name}")))
            .transpose()
    };
    AddressRange::new(
        subnet,
        ip(&raw.range_start, "rangeStart")?,
        ip(&raw.range_end, "rangeEnd")?,
        ip(&raw.gateway, "gateway")?,
        field,
    )
}

impl IpamConfig {
    /// Parse the `ipam` object. `default_data_dir` is used when `dataDir` is absent (see [`crate::paths::ipam_dir`]).
    pub fn parse(ipam: &Value, default_data_dir: &Path) -> Result<Self, IpamError> {
        let raw =
            RawIpam::deserialize(ipam).map_err(|e| IpamError::config("ipam", e.to_string()))?;

        let mut range_sets = Vec::new();
        // host-local puts the top-level shorthand range first, before `ranges`.
        if raw.shorthand.subnet.is_some() {
            let range = parse_range(&raw.shorthand, "ipam")?;
            range_sets.push(RangeSet::new(vec![range], "ipam")?);
        } else if raw.shorthand.range_start.is_some()
            || raw.shorthand.range_end.is_some()
            || raw.shorthand.gateway.is_some()
        {
            return Err(IpamError::config(
                "subnet",
                "rangeStart/rangeEnd/gateway given without subnet; add \"subnet\"",
            ));
        }
        for (i, raw_set) in raw.ranges.iter().enumerate() {
            let field = format!("ranges[{i}]");
            let ranges = raw_set
                .iter()
                .enumerate()
                .map(|(j, r)| parse_range(r, &format!("{field}[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            range_sets.push(RangeSet::new(ranges, &field)?);
        }
        if range_sets.is_empty() {
            return Err(IpamError::config(
                "ranges",
                "no address range configured; set \"subnet\" or \"ranges\"",
            ));
        }
        for (i, set) in range_sets.iter().enumerate() {
            for (j, other) in range_sets[..i].iter().enumerate() {
                if let Some((a, b)) = set.overlaps(other) {
                    return Err(IpamError::config(
                        "ranges",
                        format!(
                            "range set {i} ({a}) overlaps range set {j} ({b}); make them disjoint"
                        ),
                    ));
                }
            }
        }

        let routes = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let field = format!("routes[{i}]");
                let dst = r.dst.as_deref().ok_or_else(|| {
                    IpamError::config(
                        format!("{field}.dst"),
                        "missing; a route needs a destination",
                    )
                })?;
                Ok(RouteSpec {
                    dst: parse_cidr(dst, &format!("{field}.dst"))?,
                    gw: r
                        .gw
                        .as_deref()
                        .map(|gw| parse_ip(gw, &format!("{field}.gw")))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, IpamError>>()?;

        let data_dir = match raw.data_dir.as_deref() {
            Some("") => {
                return Err(IpamError::config(
                    "dataDir",
                    "empty; remove it or give a directory",
                ))
            }
            Some(dir) => PathBuf::from(dir),
            None => default_data_dir.to_path_buf(),
        };
        Ok(IpamConfig {
            range_sets,
            routes,
            data_dir,
            resolv_conf: raw.resolv_conf.filter(|p| !p.is_empty()).map(PathBuf::from),
        })
    }

    /// Index of the range set that holds `ip`.
    pub fn set_index_of(&self, ip: IpAddr) -> Option<usize> {
        self.range_sets.iter().position(|s| s.contains(ip))
    }

    /// All sets as text, for error messages.
    pub fn describe_ranges(&self) -> String {
        self.range_sets
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<IpamConfig, IpamError> {
        IpamConfig::parse(&v, Path::new("/state/ipam"))
    }

    #[test]
    fn shorthand_is_one_set_with_one_range() {
        let c = parse(json!({"type": "tether-ipam", "subnet": "10.88.0.0/16",
            "routes": [{"dst": "0.0.0.0/0"}]}))
        .unwrap();
        assert_eq!(c.range_sets.len(), 1);
        let r = &c.range_sets[0].ranges()[0];
        assert_eq!(r.gateway().to_string(), "10.88.0.1");
        assert_eq!(
            c.routes,
            vec![RouteSpec {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None
            }]
        );
        assert_eq!(c.data_dir, PathBuf::from("/state/ipam"));
    }

    #[test]
    fn dual_stack_ranges_with_host_local_fields() {
        let c = parse(json!({
            "ranges": [
                [{"subnet": "10.10.0.0/16", "rangeStart": "10.10.1.20", "rangeEnd": "10.10.3.50",
                  "gateway": "10.10.0.254"}, {"subnet": "172.16.5.0/24"}],
                [{"subnet": "3ffe:ffff:0:01ff::/64", "rangeStart": "3ffe:ffff:0:01ff::0010",
                  "rangeEnd": "3ffe:ffff:0:01ff::0020"}]
            ],
            "routes": [{"dst": "192.168.0.0/16", "gw": "10.10.5.1"}],
            "dataDir": "/run/x",
            "resolvConf": "/etc/resolv.conf"
        }))
        .unwrap();
        assert_eq!(c.range_sets.len(), 2);
        assert_eq!(c.range_sets[0].ranges().len(), 2);
        assert_eq!(c.range_sets[1].capacity(), 17);
        assert_eq!(c.data_dir, PathBuf::from("/run/x"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
        assert_eq!(
            c.set_index_of("3ffe:ffff:0:1ff::15".parse().unwrap()),
            Some(1)
        );
        assert_eq!(c.set_index_of("10.10.0.5".parse().unwrap()), None);
    }

    #[test]
    fn bad_cidr_names_the_field() {
        let err = parse(json!({"ranges": [[{"subnet": "10.0.0.0/8"}, {"subnet": "nonsense/24"}]]}))
            .unwrap_err();
        assert!(err.to_string().contains("ranges[0][1].subnet"), "{err}");
        let err = parse(json!({"subnet": "10.0.0.0"})).unwrap_err();
        assert!(err.to_string().contains("no prefix length"), "{err}");
        let err = parse(json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "x"}]})).unwrap_err();
        assert!(err.to_string().contains("routes[0].dst"), "{err}");
        let err = parse(json!({"subnet": "10.0.0.0/24", "gateway": "10.0.0.x"})).unwrap_err();
        assert!(err.to_string().contains("ipam.gateway"), "{err}");
    }

    #[test]
    fn overlapping_sets_are_refused() {
        let err =
            parse(json!({"ranges": [[{"subnet": "10.0.0.0/16"}], [{"subnet": "10.0.3.0/24"}]]}))
                .unwrap_err();
        assert!(err.to_string().contains("overlaps range set 0"), "{err}");
        let err = parse(json!({"subnet": "10.0.0.0/16", "ranges": [[{"subnet": "10.0.3.0/24"}]]}))
            .unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }

    #[test]
    fn missing_ranges_and_wrong_types_are_refused() {
        let err = parse(json!({"type": "tether-ipam"})).unwrap_err();
        assert!(err.to_string().contains("`ranges`"), "{err}");
        let err = parse(json!({"ranges": "10.0.0.0/24"})).unwrap_err();
        assert!(err.to_string().contains("`ipam`"), "{err}");
        let err = parse(json!({"rangeStart": "10.0.0.5"})).unwrap_err();
        assert!(err.to_string().contains("without subnet"), "{err}");
        let err = parse(json!({"subnet": "10.0.0.0/31"})).unwrap_err();
        assert!(err.to_string().contains("no usable addresses"), "{err}");
    }

    fn testdata(kind: &str) -> Vec<(String, Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/ipam")
            .join(kind);
        let mut files: Vec<(String, Value)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                (
                    path.display().to_string(),
                    serde_json::from_str(&text).unwrap(),
                )
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!files.is_empty(), "no files in {}", dir.display());
        files
    }

    #[test]
    fn every_good_testdata_config_parses() {
        for (path, conf) in testdata("good") {
            if let Err(e) = parse(conf["ipam"].clone()) {
                panic!("{path}: {e}");
            }
        }
    }

    #[test]
    fn every_bad_testdata_config_fails_with_its_expected_message() {
        for (path, conf) in testdata("bad") {
            let expected = conf["_expect_error"].as_str().unwrap();
            match parse(conf["ipam"].clone()) {
                Ok(_) => panic!("{path}: parsed but should fail with {expected:?}"),
                Err(e) => assert!(e.to_string().contains(expected), "{path}: {e}"),
            }
        }
    }
}
