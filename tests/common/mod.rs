//! Helpers shared by the integration tests: a real S3-compatible server (`s3.rs`) and a temp
//! project driven through the real `ferry` binary (`project.rs`).
//!
//! Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

pub mod project;
pub mod s3;

use std::sync::atomic::{AtomicU64, Ordering};

/// A short token unique within this machine's test runs: for bucket names and credentials.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
}

/// Deterministic pseudo-random bytes (xorshift), so big objects can be checked without keeping
/// a copy: `fill(seed, offset, buf)` gives the bytes at `offset` of the stream for `seed`.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let mut x = (offset + i as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
}
