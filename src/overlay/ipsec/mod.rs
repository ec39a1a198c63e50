//! Encrypted overlay networks (docs/encryption.md): VXLAN between hosts in IPsec ESP transport mode,
//! `rfc4106(gcm(aes))` with 256-bit keys, 128-bit ICVs, extended sequence numbers and a replay window.
//! `keys` derives one key and SPI per host pair, direction, port and epoch from the data-plane secret;
//! `epoch` says which epochs send and receive, from the clock; `generation` moves one pair to new keys
//! early when a state passes its soft lifetime; `plan` is what the kernel should hold;
//! `program` writes it over NETLINK_XFRM. Fail closed: the plugin's first ADD puts the port's catch-all
//! block policy and the input guard (`firewall::EspGuard`) in place before the VXLAN device exists, and
//! the agent adds a peer's FDB entries only once its states and policies exist.

pub mod epoch;
pub mod generation;
pub mod keys;
pub mod plan;
pub mod program;

pub use epoch::Rotation;
pub use keys::{DataKey, SECRET_LEN};
