//! CNI errors: the well-known codes of the spec ("Error" section) and the
//! JSON object a plugin prints on stdout when it fails.

use std::fmt;

use serde_json::{json, Value};

/// Well-known error codes (CNI spec 1.1.0, "Well-known Error Codes").
/// Codes 0-99 are reserved by the spec; 100+ are free for plugins.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryLater = 11,
    /// STATUS: the plugin cannot serve ADDs right now.
    PluginNotAvailable = 50,
    /// STATUS: ADDs work but the network is degraded.
    LimitedConnectivity = 51,
}

impl ErrorCode {
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// tether's own codes (the spec leaves 100 and up to plugins), the same in every tether plugin and
/// documented in docs/errors.md.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TetherCode {
    /// CHECK: kernel state differs from prevResult.
    CheckMismatch = 100,
    /// A netlink operation on a link, address or route failed.
    Netlink = 101,
    /// Installing or updating nftables state failed.
    Firewall = 102,
    /// A host port is already published by another container.
    PortInUse = 103,
    /// Overlay: every address block of the network is claimed.
    NoFreeBlock = 110,
}

impl TetherCode {
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// An error as the CNI protocol carries it. Every failure that leaves a plugin
/// ends up here, so `msg` says what failed and `details` may say what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code: code.as_u32(),
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object of the spec: `{"cniVersion","code","msg","details"}`,
    /// `details` left out when empty (as libcni does).
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut out = json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            out["details"] = Value::String(self.details.clone());
        }
        out
    }

    /// Reads an error object printed by another plugin. `None` when the value
    /// does not look like one (no numeric `code`).
    pub fn from_json(value: &Value) -> Option<CniError> {
        let code = value.get("code")?.as_u64()?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(CniError {
            code: u32::try_from(code).ok()?,
            msg: text("msg"),
            details: text("details"),
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        write!(f, " (CNI error code {})", self.code)
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_omits_empty_details() {
        let err = CniError::new(ErrorCode::InvalidConfig, "missing network name");
        assert_eq!(
            err.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "missing network name"})
        );
    }

    #[test]
    fn error_json_carries_details() {
        let err = CniError::new(ErrorCode::TryLater, "store locked").with_details("retry");
        assert_eq!(
            err.to_json("1.1.0"),
            json!({"cniVersion": "1.1.0", "code": 11, "msg": "store locked", "details": "retry"})
        );
    }

    #[test]
    fn error_round_trips_through_json() {
        let err = CniError::new(ErrorCode::PluginNotAvailable, "daemon down").with_details("x");
        assert_eq!(CniError::from_json(&err.to_json("1.1.0")), Some(err));
        assert_eq!(CniError::from_json(&json!({"msg": "no code"})), None);
    }

    #[test]
    fn display_names_code() {
        let err = CniError::new(ErrorCode::Io, "cannot read stdin").with_details("broken pipe");
        assert_eq!(
            err.to_string(),
            "cannot read stdin: broken pipe (CNI error code 5)"
        );
    }
}
