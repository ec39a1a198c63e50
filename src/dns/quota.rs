//! A container's share of something tetherd holds for all of them (pending upstream queries): taken
//! before the work starts and given back when the holder is dropped, so a container that floods runs
//! into its own limit and nobody else's.

use std::cell::Cell;
use std::rc::Rc;

#[derive(Debug)]
pub struct Quota {
    limit: usize,
    used: Cell<usize>,
}

/// One unit of a quota, returned on drop.
#[derive(Debug)]
pub struct Held(Rc<Quota>);

impl Quota {
    pub fn new(limit: usize) -> Rc<Quota> {
        Rc::new(Quota {
            limit,
            used: Cell::new(0),
        })
    }

    /// One unit, or `None` when all are in use.
    pub fn take(self: &Rc<Self>) -> Option<Held> {
        let used = self.used.get();
        if used >= self.limit {
            return None;
        }
        self.used.set(used + 1);
        Some(Held(self.clone()))
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.used.set(self.0.used.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_bounded_and_come_back_on_drop() {
        let q = Quota::new(2);
        let a = q.take().unwrap();
        let b = q.take().unwrap();
        assert!(q.take().is_none());
        assert_eq!(q.used(), 2);
        drop(a);
        let c = q.take().unwrap();
        drop((b, c));
        assert_eq!(q.used(), 0);
        // Two quotas are independent: one exhausted leaves the other whole.
        let other = Quota::new(1);
        let _held: Vec<Held> = (0..2).filter_map(|_| q.take()).collect();
        assert!(q.take().is_none());
        assert!(other.take().is_some());
    }
}
