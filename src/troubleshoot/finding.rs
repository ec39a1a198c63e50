//! One thing a check found, and what to do about it.

use serde::Serialize;

/// How much a finding matters. Only `Problem` makes `tether doctor` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Problem,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Problem => "PROBLEM",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `kernel`, `sysctl`, `firewall`, `plugins`, `conflist`, `leftovers`, `tetherd`, `bridge`.
    pub check: &'static str,
    pub severity: Severity,
    pub what: String,
    /// What to do; absent when nothing needs doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, what: impl Into<String>) -> Finding {
        Finding {
            check,
            severity: Severity::Ok,
            what: what.into(),
            fix: None,
        }
    }

    pub fn info(check: &'static str, what: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Info,
            ..Finding::ok(check, what)
        }
    }

    pub fn warning(
        check: &'static str,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity: Severity::Warning,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn problem(
        check: &'static str,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity: Severity::Problem,
            ..Finding::warning(check, what, fix)
        }
    }
}
