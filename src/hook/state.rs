//! The OCI runtime state a runtime writes to a hook's stdin (runtime-spec `runtime.md` "State").
//!
//! Six fields are enough; `status` stays a string because runtimes send values beyond the spec's four
//! (`creating`, `created`, `running`, `stopped`, and runc/crun also `paused`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::HookError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    #[serde(default)]
    pub oci_version: String,
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// Absent (or 0) once the container process is gone, e.g. in `poststop`.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl OciState {
    pub fn read(mut input: impl Read) -> Result<OciState, HookError> {
        let mut text = String::new();
        input
            .read_to_string(&mut text)
            .map_err(|source| HookError::ReadState { source })?;
        OciState::parse(&text)
    }

    pub fn parse(text: &str) -> Result<OciState, HookError> {
        if text.trim().is_empty() {
            return Err(HookError::EmptyState);
        }
        let state: OciState =
            serde_json::from_str(text).map_err(|source| HookError::DecodeState { source })?;
        if state.id.is_empty() {
            return Err(HookError::InvalidState {
                reason: "\"id\" is empty".into(),
            });
        }
        Ok(state)
    }

    /// The container's process id, when it still runs.
    pub fn live_pid(&self) -> Option<u32> {
        self.pid.filter(|pid| *pid != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_create_runtime_state_is_read() {
        let state = OciState::parse(
            r#"{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":4242,
                "bundle":"/tmp/b","annotations":{"tether.network":"front"}}"#,
        )
        .unwrap();
        assert_eq!(state.id, "c1");
        assert_eq!(state.status, "creating");
        assert_eq!(state.live_pid(), Some(4242));
        assert_eq!(state.bundle, PathBuf::from("/tmp/b"));
        assert_eq!(state.annotations["tether.network"], "front");
    }

    #[test]
    fn poststop_state_without_pid_or_annotations_is_read() {
        let state =
            OciState::parse(r#"{"ociVersion":"1.0.0","id":"c1","status":"stopped","bundle":"/b"}"#)
                .unwrap();
        assert_eq!(state.live_pid(), None);
        assert!(state.annotations.is_empty());
        let zero = OciState::parse(r#"{"id":"c1","status":"stopped","pid":0}"#).unwrap();
        assert_eq!(zero.live_pid(), None);
    }

    #[test]
    fn any_status_string_is_accepted() {
        for status in ["paused", "created", "running", "something-new"] {
            let text = format!(r#"{{"id":"c","status":"{status}"}}"#);
            assert_eq!(OciState::parse(&text).unwrap().status, status);
        }
    }

    #[test]
    fn missing_id_empty_input_and_garbage_are_refused() {
        assert!(matches!(OciState::parse(""), Err(HookError::EmptyState)));
        assert!(matches!(
            OciState::parse(r#"{"status":"creating"}"#),
            Err(HookError::DecodeState { .. })
        ));
        assert!(matches!(
            OciState::parse(r#"{"id":""}"#),
            Err(HookError::InvalidState { .. })
        ));
        assert!(matches!(
            OciState::parse("not json"),
            Err(HookError::DecodeState { .. })
        ));
    }
}
