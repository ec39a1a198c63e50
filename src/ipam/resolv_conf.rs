//! The `resolvConf` option: a host resolv.conf whose settings go into the result's DNS, as host-local does.

use std::path::Path;

use crate::cni::result::Dns;

use super::error::IpamError;

pub fn read_resolv_conf(path: &Path) -> Result<Dns, IpamError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| IpamError::io("read resolvConf", path, e))?;
    Ok(crate::resolv_conf::parse(&text))
}
