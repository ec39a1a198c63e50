//! What `tether detach --drain` prints, checked the same way wherever a test drains a backend.

use std::process::Output;

/// The drained detach succeeded, counted at least one open connection when the backend left the maps (the
/// test's held one; a health probe in flight may add to it) and none at the end.
pub fn assert_drained(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let at_start: u32 = text
        .split(" open connection(s)")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {text:?}"));
    assert!(at_start >= 1, "{text}");
    assert!(text.contains("when it left the maps, 0 left"), "{text}");
}
