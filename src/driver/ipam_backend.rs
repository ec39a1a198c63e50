//! How a driver reaches its IPAM: tether-ipam runs in-process (no exec, no second JSON round trip); any other
//! `ipam.type` (the reference host-local, dhcp, ...) is exec'd through CNI_PATH with the caller's stdin, as the
//! reference plugins do.

use crate::cni::config::Attachment;
use crate::cni::env::Command;
use crate::cni::exec::delegate_ipam;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::CniResult;
use crate::driver::rollback::Rollback;
use crate::error::Error;
use crate::ipam::plugin::{ipam_config, TetherIpam};
use crate::ipam::IpamConfig;

pub const IN_PROCESS_TYPE: &str = "tether-ipam";

pub enum IpamBackend {
    /// tether-ipam's section, parsed with the driver's config (before any kernel work).
    InProcess(IpamConfig),
    Exec(String),
}

impl IpamBackend {
    pub fn for_call(call: &Call) -> Result<Self, Error> {
        let ipam_type = call
            .conf
            .ipam
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                Error::config("network config has no `ipam.type`; add e.g. \"ipam\": {\"type\": \"tether-ipam\", \"subnet\": \"10.88.0.0/16\"}",
                )
            })?;
        Ok(if ipam_type == IN_PROCESS_TYPE {
            Self::InProcess(ipam_config(call)?)
        } else {
            Self::Exec(ipam_type.to_string())
        })
    }

    pub fn add(&self, call: &Call) -> Result<CniResult, Error> {
        match self {
            Self::InProcess(conf) => Ok(TetherIpam.add(call, conf)?),
            Self::Exec(t) => delegate_ipam(t, call, Command::Add)?
                .ok_or_else(|| Error::io(format!("IPAM plugin {t} returned no result for ADD"))),
        }
    }

    /// ADD's first step: IPAM's addresses, with their release registered on `rollback`. No address at all is
    /// a config error (an IPAM plugin with nothing to hand out says so itself).
    pub fn lease<'a>(
        &'a self,
        call: &'a Call,
        rollback: &mut Rollback<'a>,
    ) -> Result<CniResult, Error> {
        let leased = self.add(call)?;
        rollback.push("ipam lease", move || {
            self.del(call).map_err(|e| e.to_string())
        });
        if leased.ips.is_empty() {
            return Err(Error::config(format!(
                "IPAM plugin of network {} returned no address; check its ranges",
                call.conf.name
            )));
        }
        Ok(leased)
    }

    pub fn del(&self, call: &Call) -> Result<(), Error> {
        match self {
            Self::InProcess(conf) => Ok(TetherIpam.del(call, conf)?),
            Self::Exec(t) => delegate_ipam(t, call, Command::Del)
                .map(drop)
                .map_err(Error::from),
        }
    }

    pub fn check(&self, call: &Call) -> Result<(), Error> {
        match self {
            Self::InProcess(conf) => Ok(TetherIpam.check(call, conf)?),
            Self::Exec(t) => delegate_ipam(t, call, Command::Check)
                .map(drop)
                .map_err(Error::from),
        }
    }

    pub fn gc(&self, call: &Call, valid: &[Attachment]) -> Result<(), Error> {
        match self {
            Self::InProcess(conf) => Ok(TetherIpam.gc(call, conf, valid)?),
            Self::Exec(t) => delegate_ipam(t, call, Command::Gc)
                .map(drop)
                .map_err(Error::from),
        }
    }

    pub fn status(&self, call: &Call) -> Result<(), Error> {
        match self {
            Self::InProcess(conf) => Ok(TetherIpam.status(call, conf)?),
            Self::Exec(t) => delegate_ipam(t, call, Command::Status)
                .map(drop)
                .map_err(Error::from),
        }
    }
}
