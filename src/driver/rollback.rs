//! An ADD is a list of steps; each step that changed the kernel or a store pushes its undo here, and a failed
//! ADD runs the undos in reverse order (docs/design.md §4: "any failure undoes the steps before it in reverse").
//! A panic is a failure too: the undos run from `Drop` while it unwinds, which is why the release profile
//! unwinds instead of aborting.

type Undo<'a> = Box<dyn FnOnce() -> Result<(), String> + 'a>;

#[derive(Default)]
pub struct Rollback<'a> {
    steps: Vec<(&'static str, Undo<'a>)>,
}

impl<'a> Rollback<'a> {
    pub fn new() -> Self {
        Self { steps: Vec::new() }
    }

    /// Register how to undo a step that just succeeded.
    pub fn push(&mut self, what: &'static str, undo: impl FnOnce() -> Result<(), String> + 'a) {
        self.steps.push((what, Box::new(undo)));
    }

    /// The ADD succeeded: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            // An undo that fails is logged, not raised: the original error is the one the runtime must see.
            if let Err(e) = undo() {
                tracing::warn!(step = what, error = %e, "rollback step failed");
            } else {
                tracing::debug!(step = what, "rolled back");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn undoes_in_reverse_order_when_not_committed() {
        let log = RefCell::new(Vec::new());
        {
            let mut rb = Rollback::new();
            rb.push("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            rb.push("b", || {
                log.borrow_mut().push("b");
                Err("boom".into())
            });
            rb.push("c", || {
                log.borrow_mut().push("c");
                Ok(())
            });
        }
        assert_eq!(*log.borrow(), vec!["c", "b", "a"]);
    }

    #[test]
    fn a_step_that_panics_still_undoes_the_steps_before_it() {
        let log = RefCell::new(Vec::new());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut rb = Rollback::new();
            rb.push("veth", || {
                log.borrow_mut().push("veth");
                Ok(())
            });
            rb.push("lease", || {
                log.borrow_mut().push("lease");
                Ok(())
            });
            panic!("a bug in the next step");
        }));
        assert!(outcome.is_err());
        assert_eq!(*log.borrow(), vec!["lease", "veth"]);
    }

    /// With `panic = "abort"` no `Drop` runs on a panic: the test above would pass (tests unwind) while
    /// the shipped plugins leaked the veth, the lease and the firewall elements.
    #[test]
    fn the_release_profile_unwinds_so_the_undos_run_in_shipped_binaries() {
        let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .expect("Cargo.toml is readable");
        let panic_settings: Vec<&str> = manifest
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("panic") && line.contains('='))
            .collect();
        assert!(
            panic_settings
                .iter()
                .all(|line| line.ends_with("\"unwind\"")),
            "a profile sets {panic_settings:?}; Rollback, NsGuard and NsWorker need unwinding"
        );
    }

    #[test]
    fn commit_keeps_everything() {
        let log = RefCell::new(Vec::<&str>::new());
        let mut rb = Rollback::new();
        rb.push("a", || {
            log.borrow_mut().push("a");
            Ok(())
        });
        rb.commit();
        assert!(log.borrow().is_empty());
    }
}
