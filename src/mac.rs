//! Ethernet MAC addresses: a leaf, so the CNI edge parses the runtime's `mac` into one and the link layer
//! sets it.

use std::fmt;
use std::str::FromStr;

use rand::TryRng;

/// Bit 1 of the first octet: the address was assigned locally, not by a vendor (IEEE 802 §8.2.2).
const LOCALLY_ADMINISTERED: u8 = 0x02;
/// Bit 0 of the first octet: group (multicast) address.
const MULTICAST: u8 = 0x01;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

#[derive(Debug, thiserror::Error)]
pub enum MacAddrError {
    #[error("invalid MAC address {text:?}: expected six hex octets like 02:42:ac:11:00:02")]
    Syntax { text: String },

    #[error("invalid MAC address of {len} bytes: an Ethernet address has 6")]
    Length { len: usize },

    #[error("reading random bytes for a MAC address failed: {source}")]
    Random {
        #[source]
        source: std::io::Error,
    },
}

impl MacAddr {
    pub const fn new(octets: [u8; 6]) -> MacAddr {
        MacAddr(octets)
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Result<MacAddr, MacAddrError> {
        let octets: [u8; 6] = bytes
            .try_into()
            .map_err(|_| MacAddrError::Length { len: bytes.len() })?;
        Ok(MacAddr(octets))
    }

    /// A random locally administered unicast address (what the kernel does for veth, but chosen by us
    /// so it can be reported before the link exists).
    pub fn random() -> Result<MacAddr, MacAddrError> {
        let mut octets = [0u8; 6];
        rand::rngs::SysRng
            .try_fill_bytes(&mut octets)
            .map_err(|e| MacAddrError::Random { source: e.into() })?;
        Ok(MacAddr(octets).local_unicast())
    }

    /// A locally administered unicast address derived from `name`: the same name gives the same
    /// address in every process and every release (the hash is ours, not std's, whose output may change).
    pub fn from_name(name: &str) -> MacAddr {
        let hash = mix64(fnv1a64(name.as_bytes()));
        let bytes = hash.to_be_bytes();
        let mut octets = [0u8; 6];
        octets.copy_from_slice(&bytes[..6]);
        MacAddr(octets).local_unicast()
    }

    pub fn is_unicast(&self) -> bool {
        self.0[0] & MULTICAST == 0
    }

    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & LOCALLY_ADMINISTERED != 0
    }

    fn local_unicast(mut self) -> MacAddr {
        self.0[0] = (self.0[0] | LOCALLY_ADMINISTERED) & !MULTICAST;
        self
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// splitmix64's finaliser: FNV alone barely changes the high bytes for short, similar names
/// ("tether0", "tether1"), and those are the bytes we keep.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case; each octet is two hex digits.
    fn from_str(text: &str) -> Result<MacAddr, MacAddrError> {
        let syntax = || MacAddrError::Syntax {
            text: text.to_string(),
        };
        let separator = if text.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = text.split(separator);
        for octet in octets.iter_mut() {
            let part = parts.next().ok_or_else(syntax)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(syntax());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
        }
        if parts.next().is_some() {
            return Err(syntax());
        }
        Ok(MacAddr(octets))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> MacAddr {
        MacAddr(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> [u8; 6] {
        mac.0
    }
}

crate::text_form::serde_as_text!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_colon_form() {
        let mac: MacAddr = "02:42:AC:11:00:0f".parse().unwrap();
        assert_eq!(mac.octets(), [0x02, 0x42, 0xac, 0x11, 0x00, 0x0f]);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:0f");
    }

    #[test]
    fn parses_dash_form() {
        let mac: MacAddr = "02-42-ac-11-00-0f".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:ac:11:00:0f");
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:0f:00",
            "02:42:ac:11:00:f",
            "02:42:ac:11:00:0g",
            "0242.ac11.000f",
            "02:42:ac:11:00:+f",
            "02:42-ac:11:00:0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn from_slice_needs_six_bytes() {
        assert!(matches!(
            MacAddr::from_slice(&[1, 2, 3]),
            Err(MacAddrError::Length { len: 3 })
        ));
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6]).unwrap().octets(),
            [1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn random_addresses_are_local_unicast_and_differ() {
        let a = MacAddr::random().unwrap();
        let b = MacAddr::random().unwrap();
        assert!(a.is_unicast() && a.is_locally_administered(), "{a}");
        assert!(b.is_unicast() && b.is_locally_administered(), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn name_derived_address_is_stable_local_unicast() {
        let mac = MacAddr::from_name("tether0");
        assert!(mac.is_unicast() && mac.is_locally_administered());
        assert_eq!(mac, MacAddr::from_name("tether0"));
        // Pinned: a bridge must keep its address across releases, or ARP caches in containers go stale.
        assert_eq!(mac.to_string(), "96:4d:d4:86:f9:1e");
        assert_ne!(mac, MacAddr::from_name("tether1"));
        assert_ne!(
            mac.octets()[..3],
            MacAddr::from_name("tether1").octets()[..3]
        );
    }

    #[test]
    fn serde_round_trip_uses_text() {
        let mac: MacAddr = "0a:00:00:00:00:01".parse().unwrap();
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"0a:00:00:00:00:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
    }
}
