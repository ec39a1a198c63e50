//! Data-plane keys: one per host pair, direction and epoch, derived with HKDF-SHA256 from the cluster's
//! data-plane secret (tetherd's `encryption.keyFile`, never the control plane's key and never in the
//! store). Both ends derive the same key for a direction without talking; no leader hands keys out.
//! SPIs come from the same secret and are checked against every other state of the receiving host.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ring::hkdf::{KeyType, Salt, HKDF_SHA256};

use crate::link::xfrm::ESP_KEY_LEN;

pub const SECRET_LEN: usize = 32;
/// Domain separation: the same secret used for anything else yields unrelated keys.
const SALT: &[u8] = b"tether overlay esp v1";
/// SPIs 1-255 are reserved (RFC 4303); 0 means none.
const FIRST_SPI: u32 = 0x100;

/// The cluster's data-plane secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; SECRET_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A receiver holds three consecutive generations of each sender (see `plan`), so `generation % 3` names
/// each of them apart: SPIs are assigned over these slots, which sender and receiver list alike without
/// knowing every other host's generation.
pub const GENERATION_SLOTS: u64 = 3;

/// One direction of one host pair on one VXLAN port in one epoch and generation (the sender's count of
/// early rekeys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Direction {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub port: u16,
    pub epoch: u64,
    pub generation: u64,
}

impl Direction {
    /// The direction with its generation reduced to its slot: what SPIs are assigned over.
    pub fn slot(&self) -> Direction {
        Direction {
            generation: self.generation % GENERATION_SLOTS,
            ..*self
        }
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// An address as 16 bytes (IPv4-mapped for IPv4), so the two families never derive the same input.
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl DataKey {
    pub fn new(secret: [u8; SECRET_LEN]) -> DataKey {
        DataKey(secret)
    }

    /// HKDF-Expand of the secret with `label` and the direction (and `extra`) as info.
    fn expand(&self, label: &[u8], d: &Direction, extra: &[u8], out: &mut [u8]) {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(&self.0);
        let (src, dst) = (address_bytes(d.src), address_bytes(d.dst));
        let (port, epoch) = (d.port.to_be_bytes(), d.epoch.to_be_bytes());
        let generation = d.generation.to_be_bytes();
        let info: [&[u8]; 7] = [label, &src, &dst, &port, &epoch, &generation, extra];
        prk.expand(&info, Len(out.len()))
            .and_then(|okm| okm.fill(out))
            .expect("HKDF-SHA256 gives up to 8160 bytes; tether asks for at most 36");
    }

    /// The AES-256-GCM key and 4-byte salt of a direction, as `rfc4106(gcm(aes))` takes them.
    pub fn esp_key(&self, d: &Direction) -> [u8; ESP_KEY_LEN] {
        let mut out = [0u8; ESP_KEY_LEN];
        self.expand(b"esp key", d, &[], &mut out);
        out
    }

    /// The `attempt`-th SPI candidate of a direction's slot, never a reserved one.
    pub fn spi_candidate(&self, d: &Direction, attempt: u8) -> u32 {
        let mut out = [0u8; 4];
        self.expand(b"esp spi", &d.slot(), &[attempt], &mut out);
        FIRST_SPI + u32::from_be_bytes(out) % (u32::MAX - FIRST_SPI)
    }

    /// SPIs for every slot of the directions arriving at one host (see [`assign_spis`]); look a
    /// direction up by [`Direction::slot`].
    pub fn assign_spis(&self, directions: &[Direction]) -> BTreeMap<Direction, u32> {
        let slots: Vec<Direction> = directions.iter().map(Direction::slot).collect();
        assign_spis(&slots, |d, attempt| self.spi_candidate(d, attempt))
    }
}

/// A host's states are named by (destination, SPI), so no two of `directions` (all arriving at one host)
/// may share an SPI. In the order of the directions (source, port, epoch), each takes its first
/// `candidate` no earlier one holds: the sender and the receiver compute this from the same list of hosts
/// and agree without talking.
pub fn assign_spis(
    directions: &[Direction],
    candidate: impl Fn(&Direction, u8) -> u32,
) -> BTreeMap<Direction, u32> {
    let mut sorted = directions.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut taken = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for d in sorted {
        let spi = (0..=u8::MAX)
            .map(|attempt| candidate(&d, attempt))
            .find(|spi| !taken.contains(spi))
            .expect("256 candidates cannot all collide among a host's few hundred states");
        taken.insert(spi);
        out.insert(d, spi);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(src: &str, dst: &str, epoch: u64) -> Direction {
        Direction {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            port: 4789,
            epoch,
            generation: 0,
        }
    }

    fn key() -> DataKey {
        DataKey::new([7; SECRET_LEN])
    }

    #[test]
    fn each_direction_epoch_and_port_has_its_own_key() {
        let k = key();
        let ab = k.esp_key(&d("192.0.2.1", "192.0.2.2", 5));
        assert_eq!(
            ab,
            k.esp_key(&d("192.0.2.1", "192.0.2.2", 5)),
            "deterministic"
        );
        assert_ne!(ab, k.esp_key(&d("192.0.2.2", "192.0.2.1", 5)), "direction");
        assert_ne!(ab, k.esp_key(&d("192.0.2.1", "192.0.2.2", 6)), "epoch");
        assert_ne!(ab, k.esp_key(&d("192.0.2.1", "192.0.2.3", 5)), "pair");
        let mut rekeyed = d("192.0.2.1", "192.0.2.2", 5);
        rekeyed.generation = 1;
        assert_ne!(ab, k.esp_key(&rekeyed), "generation");
        rekeyed.generation = 3;
        assert_ne!(
            ab,
            k.esp_key(&rekeyed),
            "a generation three on, in the same SPI slot"
        );
        let mut other_port = d("192.0.2.1", "192.0.2.2", 5);
        other_port.port = 4790;
        assert_ne!(ab, k.esp_key(&other_port), "port");
        assert_ne!(
            ab,
            DataKey::new([8; SECRET_LEN]).esp_key(&d("192.0.2.1", "192.0.2.2", 5)),
            "secret"
        );
    }

    #[test]
    fn hkdf_sha256_matches_rfc_5869_test_case_1() {
        // The primitive itself, against the RFC's vector: IKM 22 x 0x0b, salt 00..0c, info f0..f9, L 42.
        let prk = Salt::new(HKDF_SHA256, &(0u8..=0x0c).collect::<Vec<_>>()).extract(&[0x0b; 22]);
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let mut okm = [0u8; 42];
        prk.expand(&[&info], Len(42))
            .unwrap()
            .fill(&mut okm)
            .unwrap();
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn spis_avoid_the_reserved_range_and_differ_per_direction() {
        let k = key();
        let a = k.spi_candidate(&d("192.0.2.1", "192.0.2.2", 1), 0);
        let b = k.spi_candidate(&d("192.0.2.3", "192.0.2.2", 1), 0);
        assert!(a >= FIRST_SPI && b >= FIRST_SPI);
        assert_ne!(a, b);
        assert_ne!(a, k.spi_candidate(&d("192.0.2.1", "192.0.2.2", 1), 1));
    }

    #[test]
    fn a_collision_moves_the_later_direction_to_its_next_candidate() {
        // A candidate function where every source's first choice is the same SPI.
        let clash = |d: &Direction, attempt: u8| {
            if attempt == 0 {
                0x1000
            } else {
                0x2000 + u32::from(attempt) * 0x10 + d.epoch as u32
            }
        };
        let dirs = [
            d("10.0.0.2", "10.0.0.9", 1),
            d("10.0.0.1", "10.0.0.9", 1),
            d("10.0.0.3", "10.0.0.9", 1),
        ];
        let spis = assign_spis(&dirs, clash);
        assert_eq!(
            spis[&d("10.0.0.1", "10.0.0.9", 1)],
            0x1000,
            "first in order keeps it"
        );
        assert_eq!(spis[&d("10.0.0.2", "10.0.0.9", 1)], 0x2011);
        assert_eq!(spis[&d("10.0.0.3", "10.0.0.9", 1)], 0x2021);
        let many: Vec<Direction> = (1..=200u8)
            .map(|h| d(&format!("10.0.{h}.1"), "10.255.0.1", 3))
            .collect();
        let real = key().assign_spis(&many);
        let unique: std::collections::BTreeSet<u32> = real.values().copied().collect();
        assert_eq!(unique.len(), many.len(), "every direction has its own SPI");
    }

    #[test]
    fn generations_three_apart_share_an_spi_and_neighbours_do_not() {
        let k = key();
        let g = |generation| Direction {
            generation,
            ..d("10.0.0.1", "10.0.0.9", 1)
        };
        assert_eq!(k.spi_candidate(&g(1), 0), k.spi_candidate(&g(4), 0));
        let spis = k.assign_spis(&[g(4), g(5), g(6)]);
        let unique: std::collections::BTreeSet<u32> = spis.values().copied().collect();
        assert_eq!(unique.len(), 3);
        assert_eq!(
            spis,
            k.assign_spis(&[g(0), g(1), g(2)]),
            "only the slots count"
        );
    }

    #[test]
    fn sender_and_receiver_agree_whatever_order_they_list_hosts_in() {
        let k = key();
        let mut dirs = vec![
            d("10.0.0.3", "10.0.0.9", 1),
            d("10.0.0.1", "10.0.0.9", 1),
            d("10.0.0.2", "10.0.0.9", 2),
        ];
        let one = k.assign_spis(&dirs);
        dirs.reverse();
        assert_eq!(one, k.assign_spis(&dirs));
    }
}
