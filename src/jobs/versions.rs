//! The identity of a job script version: the SHA-256 of its source, as lowercase hex. The
//! history keeps every version that loaded under it, and every run records the one it ran.
//! [`PendingWrites`] tells the reload which of the versions it loads were written through the
//! API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::sync::LockExt;
use sha2::Digest;

/// Versions remembered per job; older ones were overwritten before any reload saw them.
const PENDING_PER_JOB: usize = 16;

/// The versions written through the API that no reload has loaded yet, by job, with the name
/// of the token that wrote each. The API adds a version before it renames the file into place;
/// the reload that loads it takes it back out and records the version as coming from the API
/// (any other as coming from the file).
#[derive(Debug, Default, Clone)]
pub struct PendingWrites(Arc<Mutex<HashMap<String, VecDeque<Pending>>>>);

/// A version's hash and the name of the token writing it.
type Pending = (String, String);

impl PendingWrites {
    /// Remembers that version `hash` of `job` is being written through the API by the token
    /// named `by`.
    pub fn add(&self, job: &str, hash: &str, by: &str) {
        let mut map = self.0.lock_unpoisoned();
        let list = map.entry(job.to_owned()).or_default();
        list.retain(|(h, _)| h != hash);
        if list.len() == PENDING_PER_JOB {
            list.pop_front();
        }
        list.push_back((hash.to_owned(), by.to_owned()));
    }

    /// The token that wrote version `hash` of `job` through the API, if it was (and forgets
    /// it).
    pub fn take(&self, job: &str, hash: &str) -> Option<String> {
        let mut map = self.0.lock_unpoisoned();
        let list = map.get_mut(job)?;
        let found = list
            .iter()
            .position(|(h, _)| h == hash)
            .and_then(|i| list.remove(i));
        if list.is_empty() {
            map.remove(job);
        }
        found.map(|(_, by)| by)
    }
}

/// The version hash of `source`.
pub fn hash(source: &str) -> String {
    sha2::Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` has the shape of a version hash (64 lowercase hex digits).
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_hex() {
        let h = hash("");
        assert_eq!(
            h,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_hash(&h));
        assert!(!is_hash("E3B0"));
        assert!(!is_hash(&h.to_uppercase()));
    }

    #[test]
    fn pending_writes_are_taken_once() {
        let p = PendingWrites::default();
        p.add("a", "h1", "ci");
        p.add("a", "h1", "ops");
        assert_eq!(p.take("b", "h1"), None);
        assert_eq!(p.take("a", "h1").as_deref(), Some("ops"), "the last writer");
        assert_eq!(p.take("a", "h1"), None);
        for i in 0..=PENDING_PER_JOB {
            p.add("a", &i.to_string(), "ci");
        }
        assert_eq!(p.take("a", "0"), None, "the oldest is forgotten");
        assert!(p.take("a", &PENDING_PER_JOB.to_string()).is_some());
    }
}
