//! A driver's whole configuration for one call, made once by `Plugin::config` before any command runs, so
//! a bad field is refused before any kernel work: the driver's own fields, the DNS fields and names every
//! interface driver shares, and the IPAM backend (tether-ipam's section parsed) for drivers that lease
//! through IPAM.

use crate::cni::plugin::Call;
use crate::driver::dns_endpoint::{EmbeddedDns, EndpointNames};
use crate::driver::ipam_backend::IpamBackend;
use crate::error::Error;

pub struct CallConfig<C, I = IpamBackend> {
    pub net: C,
    pub dns: EmbeddedDns,
    pub names: EndpointNames,
    pub ipam: I,
}

impl<C> CallConfig<C> {
    /// For drivers whose addresses come from the network's `ipam` section.
    pub fn with_ipam(call: &Call, net: C) -> Result<CallConfig<C>, Error> {
        CallConfig::with(call, net, IpamBackend::for_call(call)?)
    }
}

impl<C, I> CallConfig<C, I> {
    pub fn with(call: &Call, net: C, ipam: I) -> Result<CallConfig<C, I>, Error> {
        Ok(CallConfig {
            net,
            dns: EmbeddedDns::from_conf(&call.conf.raw)?,
            names: EndpointNames::from_call(call),
            ipam,
        })
    }
}
