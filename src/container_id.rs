//! The CNI spec's identifier rule, for container IDs (CNI_CONTAINERID) and network names: "Must start with
//! an alphanumeric character, optionally followed by any combination of one or more alphanumeric
//! characters, underscore (_), dot (.) or hyphen (-)."

use crate::checked_name::{Checked, NameRule};

/// A container ID as the spec allows it.
pub type ContainerId = Checked<CniIdentifier>;

/// The rule of [`ContainerId`].
pub struct CniIdentifier;

impl NameRule for CniIdentifier {
    const WHAT: &'static str = "container ID";
    fn problem(text: &str) -> Option<&'static str> {
        match is_valid_identifier(text) {
            true => None,
            false => Some(
                "it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
            ),
        }
    }
}

/// Whether `text` follows the spec's identifier rule (network names follow it too).
pub fn is_valid_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
