//! Locks that outlive a panic. A thread that panics while holding a `Mutex` or `RwLock`
//! poisons it; every lock in ferry guards state that stays consistent between statements (a
//! map, a counter, a handle), so the right answer is to go on with the data as it is rather
//! than to panic in every other thread too. These traits say that once, instead of
//! `.lock().unwrap_or_else(|p| p.into_inner())` at every call.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `Mutex::lock`, recovering the guard of a poisoned mutex.
pub trait LockExt<T: ?Sized> {
    /// Locks, whether or not a thread panicked while holding the lock.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `RwLock::read`/`write`, recovering the guard of a poisoned lock.
pub trait RwLockExt<T: ?Sized> {
    /// Takes a read lock, whether or not a thread panicked while holding the lock.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// Takes the write lock, whether or not a thread panicked while holding it.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let rw = std::sync::Arc::new(RwLock::new(2));
        let (m2, rw2) = (m.clone(), rw.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = rw2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.lock_unpoisoned() += 1;
        *rw.write_unpoisoned() += 1;
        assert_eq!((*m.lock_unpoisoned(), *rw.read_unpoisoned()), (2, 3));
    }
}
