//! Netlink (NETLINK_NETFILTER) access to nf_tables for the per-container hot path.

pub mod reader;
pub mod replies;
pub mod requests;
pub mod ruleset;
pub mod socket;
pub mod uapi;
pub mod writer;
