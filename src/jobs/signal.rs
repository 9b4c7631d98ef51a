//! A wake-up call for a loop on a thread of its own (the dispatcher's): any thread raises it,
//! the loop waits for it with a timeout. Raising it while the loop is busy is not lost: the
//! next wait returns at once. Several raises before a wait count as one.

use crate::sync::LockExt;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A flag one loop waits on and any thread raises.
#[derive(Debug, Default)]
pub struct Signal {
    raised: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    /// Raises the flag, waking the loop if it waits.
    pub fn raise(&self) {
        // Only a bool is held under this lock; a poisoned one is still consistent.
        *self.raised.lock_unpoisoned() = true;
        self.cv.notify_all();
    }

    /// Waits until the flag is raised or `timeout` passes; lowers it. Returns whether it was
    /// raised.
    pub fn wait(&self, timeout: Duration) -> bool {
        let raised = self.raised.lock_unpoisoned();
        let (mut raised, _) = self
            .cv
            .wait_timeout_while(raised, timeout, |r| !*r)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_raise_before_the_wait_is_kept_and_raises_coalesce() {
        let s = Signal::default();
        s.raise();
        s.raise();
        assert!(s.wait(Duration::from_secs(60)), "returns at once");
        assert!(!s.wait(Duration::ZERO), "two raises count once");
    }

    #[test]
    fn a_raise_from_another_thread_wakes_the_waiter() {
        let s = Arc::new(Signal::default());
        let raiser = {
            let s = s.clone();
            std::thread::spawn(move || s.raise())
        };
        // An hour: only the raise can end this wait in a passing test.
        assert!(s.wait(Duration::from_secs(3600)));
        raiser.join().unwrap();
    }
}
