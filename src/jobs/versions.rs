//! The identity of a job script version: the SHA-256 of its source, as lowercase hex. The
//! history keeps every version that loaded under it, and every run records the one it ran.

use sha2::Digest;

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
}
