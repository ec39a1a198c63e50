//! Which half of the work a hook call does: attach (createRuntime, or the deprecated prestart) or detach
//! (poststop). The state's `status` says which stage the runtime is in; an explicit `attach`/`detach`
//! argument wins, for runtimes that report an unexpected status.

use std::fmt;

use super::error::HookError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Attach,
    Detach,
}

impl Stage {
    /// The stage from an explicit argument, else from the OCI status.
    pub fn choose(explicit: Option<Stage>, status: &str) -> Result<Stage, HookError> {
        if let Some(stage) = explicit {
            return Ok(stage);
        }
        match status {
            // runtime-spec: createRuntime runs with status "creating"; runc reports prestart hooks as
            // "created" on some versions.
            "creating" | "created" => Ok(Stage::Attach),
            "stopped" => Ok(Stage::Detach),
            other => Err(HookError::UnknownStage {
                status: other.to_string(),
            }),
        }
    }

    pub fn parse(word: &str) -> Option<Stage> {
        match word {
            "attach" => Some(Stage::Attach),
            "detach" => Some(Stage::Detach),
            _ => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Attach => "attach",
            Stage::Detach => "detach",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_and_created_attach_stopped_detaches() {
        assert_eq!(Stage::choose(None, "creating").unwrap(), Stage::Attach);
        assert_eq!(Stage::choose(None, "created").unwrap(), Stage::Attach);
        assert_eq!(Stage::choose(None, "stopped").unwrap(), Stage::Detach);
    }

    #[test]
    fn running_or_paused_without_an_explicit_stage_is_refused() {
        for status in ["running", "paused", ""] {
            assert!(matches!(
                Stage::choose(None, status),
                Err(HookError::UnknownStage { .. })
            ));
        }
    }

    #[test]
    fn an_explicit_stage_overrides_the_status() {
        assert_eq!(
            Stage::choose(Some(Stage::Detach), "creating").unwrap(),
            Stage::Detach
        );
        assert_eq!(
            Stage::choose(Some(Stage::Attach), "running").unwrap(),
            Stage::Attach
        );
    }
}
