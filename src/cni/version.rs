//! CNI spec versions: parsing, ordering, what this implementation speaks and
//! which commands each version allows.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

use super::error::{CniError, ErrorCode};

/// Every spec version tether accepts and can answer in, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version; used where no configuration says otherwise.
pub const CURRENT_VERSION: &str = "1.1.0";

/// A spec version `major.minor.patch`. Ordered numerically, so 0.10.0 > 0.4.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    pub const V1_0_0: Version = Version::new(1, 0, 0);
    pub const V1_1_0: Version = Version::new(1, 1, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `x.y.z`; like libcni, a missing minor or patch counts as 0.
    pub fn parse(text: &str) -> Result<Version, CniError> {
        let bad = || {
            CniError::new(ErrorCode::Decode, format!("invalid cniVersion \"{text}\""))
                .with_details("expected a version like \"1.0.0\"")
        };
        let parts: Vec<&str> = text.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(bad());
        }
        let mut numbers = [0u32; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            *slot = part.parse().map_err(|_| bad())?;
        }
        Ok(Version::new(numbers[0], numbers[1], numbers[2]))
    }

    /// CHECK exists since spec 0.4.0.
    pub fn supports_check(&self) -> bool {
        *self >= Version::V0_4_0
    }

    /// GC and STATUS exist since spec 1.1.0.
    pub fn supports_gc_status(&self) -> bool {
        *self >= Version::V1_1_0
    }
}

impl FromStr for Version {
    type Err = CniError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Version::parse(text)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// True when `text` is one of [`SUPPORTED_VERSIONS`], spelled exactly so.
pub fn is_supported(text: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&text)
}

/// Code 1 error for a configuration in a version tether does not speak.
pub fn incompatible(text: &str) -> CniError {
    CniError::new(
        ErrorCode::IncompatibleVersion,
        format!("incompatible CNI version: config asks for cniVersion \"{text}\""),
    )
    .with_details(format!(
        "this plugin supports {}; set cniVersion to one of them",
        SUPPORTED_VERSIONS.join(", ")
    ))
}

/// The answer to VERSION (spec section "VERSION: probe plugin version support").
pub fn version_info_json() -> Value {
    json!({
        "cniVersion": CURRENT_VERSION,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        let v = Version::parse("0.10.0").unwrap();
        assert!(v > Version::parse("0.4.0").unwrap());
        assert_eq!(Version::parse("1.1.0").unwrap(), Version::V1_1_0);
        assert_eq!(Version::parse("0.1").unwrap(), Version::new(0, 1, 0));
        assert_eq!(Version::V1_0_0.to_string(), "1.0.0");
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "a.b.c", "1.0.0.0", "1..0", "-1.0.0", "1.0.x"] {
            let err = Version::parse(text).unwrap_err();
            assert_eq!(err.code, 6, "{text}");
        }
    }

    #[test]
    fn command_availability_follows_spec() {
        assert!(!Version::parse("0.3.1").unwrap().supports_check());
        assert!(Version::parse("0.4.0").unwrap().supports_check());
        assert!(!Version::parse("1.0.0").unwrap().supports_gc_status());
        assert!(Version::parse("1.1.0").unwrap().supports_gc_status());
    }

    #[test]
    fn supported_list_is_sorted_and_parses() {
        let parsed: Vec<Version> = SUPPORTED_VERSIONS
            .iter()
            .map(|v| Version::parse(v).unwrap())
            .collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        assert!(is_supported("0.3.1"));
        assert!(!is_supported("0.3"));
    }

    #[test]
    fn version_answer_lists_everything() {
        assert_eq!(
            version_info_json(),
            json!({"cniVersion": "1.1.0",
                   "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
}
