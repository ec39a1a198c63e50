//! The plugin's part of an encrypted overlay (docs/encryption.md): before the network's VXLAN device
//! exists on this host, its port is closed both ways: the catch-all xfrm policy blocks the port's VXLAN
//! to every host (tetherd's peer policies and states open it per peer), and the input guard drops
//! VXLAN that did not come out of ESP. A kernel without ESP refuses the ADD by name instead.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::Error;
use crate::firewall::EspGuard;
use crate::link::xfrm::{
    EspState, Policy, PolicyAction, PolicyDir, Selector, StateId, XfrmError, XfrmSocket, ESP_AEAD,
    ESP_ICV_BITS, ESP_KEY_LEN,
};

/// Every tether state and policy carries a reqid of this prefix with the port below it.
pub const REQID_PREFIX: u32 = 0x7e7e_0000;
/// A peer's policies win over the catch-all block (lower is stronger).
pub const PEER_PRIORITY: u32 = 100;
pub const BLOCK_PRIORITY: u32 = 1000;
/// ESP transport with AES-GCM adds SPI and sequence (8), the explicit IV (8), padding to 4 bytes (up to 3),
/// pad length and next header (2) and the ICV (16): 37, taken as 40 to keep the MTU a multiple of 4.
pub const ESP_OVERHEAD: u32 = 40;
/// The SPI of the throwaway state that asks the kernel whether it has ESP with tether's AEAD.
const PROBE_SPI: u32 = 0x7e7e_0001;

pub fn reqid(port: u16) -> u32 {
    REQID_PREFIX | u32::from(port)
}

pub fn is_ours(reqid: u32) -> bool {
    reqid & 0xffff_0000 == REQID_PREFIX
}

/// The catch-all of a port: VXLAN from this VTEP to any host without a peer policy is dropped, so a peer
/// whose states are missing gets nothing, never cleartext.
pub fn block_policy(vtep: IpAddr, port: u16) -> Policy {
    Policy {
        dir: PolicyDir::Out,
        selector: Selector::udp(Some(vtep), None, port),
        priority: BLOCK_PRIORITY,
        action: PolicyAction::Block,
    }
}

fn xfrm_failure(what: &str, e: XfrmError) -> Error {
    Error::io(format!("encrypted overlay: {what}: {e}"))
}

/// Whether this kernel takes an ESP transport state with `rfc4106(gcm(aes))`: a throwaway state on
/// loopback (reqid of port 0, which the agent deletes if a crash leaves it) is added and removed.
pub fn check_kernel_has_esp(sock: &XfrmSocket) -> Result<(), Error> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let probe = EspState {
        id: StateId {
            dst: lo,
            spi: PROBE_SPI,
        },
        src: lo,
        port: 0,
        reqid: reqid(0),
        algorithm: ESP_AEAD,
        key: [0x5a; ESP_KEY_LEN],
        icv_bits: ESP_ICV_BITS,
        replay_window: 32,
        soft_bytes: None,
        soft_packets: None,
    };
    if let Err(e) = sock.add_state(&probe) {
        return Err(Error::unsupported(format!(
            "this network is encrypted (\"encrypted\": true) but the kernel refused an IPsec ESP state \
             with {ESP_AEAD}: {e}. Load the esp4 (esp6) module and the crypto modules gcm, aes, drbg and \
             jitterentropy_rng, or use a kernel built with them; tether never sends an encrypted \
             network's traffic in clear"
        )));
    }
    sock.delete_state(&probe.id)
        .map_err(|e| xfrm_failure("removing the ESP probe state", e))?;
    Ok(())
}

/// Closes `port` on this host before its VXLAN device exists: ESP checked, block policy, input guard.
/// Idempotent; every ADD of an encrypted network runs it.
pub fn close_port(vtep: IpAddr, port: u16) -> Result<(), Error> {
    let sock = XfrmSocket::open().map_err(|e| xfrm_failure("opening NETLINK_XFRM", e))?;
    check_kernel_has_esp(&sock)?;
    sock.update_policy(&block_policy(vtep, port))
        .map_err(|e| xfrm_failure("installing the catch-all block policy", e))?;
    EspGuard { port }.install()?;
    Ok(())
}

/// Opens `port` again when no encrypted network of this host uses it any more (the last one's teardown).
pub fn reopen_port(vtep: IpAddr, port: u16) -> Result<(), Error> {
    let sock = XfrmSocket::open().map_err(|e| xfrm_failure("opening NETLINK_XFRM", e))?;
    let block = block_policy(vtep, port);
    sock.delete_policy(&block.selector, block.dir)
        .map_err(|e| xfrm_failure("removing the catch-all block policy", e))?;
    EspGuard { port }.remove()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reqids_name_the_port_and_mark_the_state_as_tethers() {
        assert_eq!(reqid(4789), 0x7e7e_12b5);
        assert!(is_ours(reqid(4789)) && is_ours(reqid(0)));
        assert!(!is_ours(0) && !is_ours(0x0001_12b5));
    }

    #[test]
    fn the_block_covers_the_port_from_this_vtep_to_anyone_below_the_peer_policies() {
        let p = block_policy("192.0.2.1".parse().unwrap(), 4790);
        assert_eq!(p.selector.dst, None);
        assert_eq!(p.selector.dport, Some(4790));
        assert_eq!(p.action, PolicyAction::Block);
        assert!(p.priority > PEER_PRIORITY);
    }
}
