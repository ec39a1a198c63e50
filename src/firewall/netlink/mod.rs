//! Netlink (NETLINK_NETFILTER) access to nf_tables: every table, chain, set, rule and element tether writes.

pub mod reader;
pub mod replies;
pub mod requests;
pub mod ruleset;
pub mod socket;
pub mod uapi;
pub mod verdict;
pub mod writer;
