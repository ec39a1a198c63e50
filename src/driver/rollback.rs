//! An ADD is a list of steps; each step that changed the kernel or a store pushes its undo here, and a failed
//! ADD runs the undos in reverse order (docs/design.md §4: "any failure undoes the steps before it in reverse").

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
