//! Every CNI spec version a plugin must accept and answer in, written here from the spec rather than taken
//! from `tether::cni::SUPPORTED_VERSIONS`: a VERSION test compared with the library's own list could not fail
//! when that list lost a version.

pub const ALL: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
