//! Static address requests: `runtimeConfig.ips`, `CNI_ARGS` `IP=`, and `args.cni.ips`, each a list of
//! "10.1.2.3/24" or bare "10.1.2.3"; only the address counts (the prefix comes from the range).

use std::net::IpAddr;

use super::error::IpamError;
use crate::cni::runtime_config::requested_ip;

/// Parse one requested address; `source` names where it came from for the error message.
pub fn parse_requested(text: &str, source: &str) -> Result<IpAddr, IpamError> {
    let text = text.trim();
    requested_ip(text).ok_or_else(|| {
        IpamError::config(
            source,
            format!("{text:?} is not an IP address; write \"10.1.2.3\" or \"10.1.2.3/24\""),
        )
    })
}

/// Parse every request, in order, after the ones already typed at the CNI edge (`runtimeConfig.ips`),
/// dropping repeats (one address may be asked for by several sources).
pub fn parse_all<'a>(
    typed: &[IpAddr],
    requests: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<IpAddr>, IpamError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in typed {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    for (text, source) in requests {
        let ip = parse_requested(text, source)?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_bare_forms_are_accepted_and_repeats_dropped() {
        let ips = parse_all(
            &["10.1.2.3".parse().unwrap()],
            [("fd00::3", "CNI_ARGS IP"), ("10.1.2.3/24", "args.cni.ips")],
        )
        .unwrap();
        assert_eq!(
            ips,
            vec![
                "10.1.2.3".parse::<IpAddr>().unwrap(),
                "fd00::3".parse().unwrap()
            ]
        );
    }

    #[test]
    fn garbage_names_its_source() {
        let err = parse_all(&[], [("10.1.2.300", "CNI_ARGS IP")]).unwrap_err();
        assert!(err.to_string().contains("`CNI_ARGS IP`"), "{err}");
    }
}
