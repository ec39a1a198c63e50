//! tetherd and the embedded resolver, end to end (filled in below).

#[path = "harness/mod.rs"]
mod harness;
