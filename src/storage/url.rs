//! Store URLs (`file:///abs`, relative paths, `s3://bucket/prefix`, `memory://name`) and object
//! paths inside a store.

use std::path::{Component, Path, PathBuf};

use super::confine::refuse_dot_segments;

/// Where a store keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A folder on the local disk: an absolute path, made of normal components only (no `..`).
    Local(PathBuf),
    /// An S3 (or S3-compatible) bucket, with an optional key prefix (no leading or trailing `/`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, empty for the whole bucket.
        prefix: String,
    },
    /// An in-memory store, shared by every `memory://NAME` of the same name within a run.
    Memory {
        /// The name (may be empty).
        name: String,
    },
}

impl StoreUrl {
    /// Parses a store URL or path; relative paths are taken from `base` (the project root).
    pub fn parse(text: &str, base: &Path) -> Result<StoreUrl, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "empty store URL; expected a path, file:///abs, s3://bucket/prefix or memory://"
                    .into(),
            );
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            return parse_s3(rest);
        }
        if let Some(rest) = text
            .strip_prefix("memory://")
            .or_else(|| text.strip_prefix("memory:"))
        {
            let name = rest.trim_end_matches('/');
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "memory store name {name:?} may use letters, digits, `_` and `-` only"
                ));
            }
            return Ok(StoreUrl::Memory {
                name: name.to_string(),
            });
        }
        if text.starts_with("file:") {
            refuse_dot_segments(text)?;
            let url = url::Url::parse(text).map_err(|e| format!("invalid file URL: {e}"))?;
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err("file URLs name no host: use file:///absolute/path".into());
            }
            let path = url
                .to_file_path()
                .map_err(|()| "invalid file URL: use file:///absolute/path".to_string())?;
            return local(path);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "unsupported store URL scheme {scheme:?}; expected a path, file:///abs, s3://bucket/prefix or memory://"
            ));
        }
        refuse_dot_segments(text)?;
        local(base.join(text))
    }

    /// The URL as shown to people and recorded for artifacts. It never contains credentials:
    /// they are not part of a store URL.
    pub fn to_url_string(&self) -> String {
        match self {
            StoreUrl::Local(p) => file_url(p),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            StoreUrl::Memory { name } => format!("memory://{name}"),
        }
    }

    /// The URL of an object of this store (`path` already validated).
    pub fn object_url(&self, path: &str) -> String {
        match self {
            StoreUrl::Local(p) => file_url(&p.join(path)),
            StoreUrl::S3 { .. } => format!("{}/{path}", self.to_url_string()),
            StoreUrl::Memory { name } => format!("memory://{name}/{path}"),
        }
    }
}

fn file_url(p: &Path) -> String {
    url::Url::from_file_path(p)
        .map(|u| u.to_string())
        .unwrap_or_else(|()| format!("file://{}", p.display()))
}

fn local(path: PathBuf) -> Result<StoreUrl, String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    // Drop `.` components and a trailing slash; `..` was refused before.
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    Ok(StoreUrl::Local(clean))
}

fn parse_s3(rest: &str) -> Result<StoreUrl, String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains('@') || bucket.contains(':') {
        return Err(
            "s3 URLs must not carry credentials or ports: give them as options (access_key_id, secret_access_key, endpoint) or in [stores.NAME] in ferry.toml"
                .into(),
        );
    }
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(format!(
            "invalid bucket name {bucket:?} in s3://{rest}: expected lowercase letters, digits, `-` and `.`"
        ));
    }
    if prefix.contains(['?', '#']) {
        return Err(format!(
            "s3://{rest}: query strings and fragments are not allowed"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        validate_path(prefix).map_err(|m| format!("s3://{rest}: prefix: {m}"))?;
    }
    Ok(StoreUrl::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// Checks an object path: relative, `/`-separated, no empty, `.` or `..` segments, no NUL.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute; paths inside a store are relative to the store"
        ));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }
    for seg in path.split('/') {
        match seg {
            "" => {
                return Err(format!(
                    "{path:?} has an empty segment (`//` or a trailing `/`)"
                ));
            }
            "." | ".." => {
                return Err(format!("{path:?}: `.` and `..` segments are not allowed"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a list prefix: empty (everything), or a path with an optional trailing `/`.
/// Returns the prefix without the trailing `/`.
pub fn validate_prefix(prefix: &str) -> Result<&str, String> {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    if p.is_empty() {
        return Ok("");
    }
    validate_path(p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StoreUrl, String> {
        StoreUrl::parse(s, Path::new("/proj"))
    }

    #[test]
    fn parses_every_form() {
        let cases: &[(&str, StoreUrl)] = &[
            ("data/out", StoreUrl::Local("/proj/data/out".into())),
            ("./data/out/", StoreUrl::Local("/proj/data/out".into())),
            ("/abs/dir", StoreUrl::Local("/abs/dir".into())),
            ("file:///abs/a%20b", StoreUrl::Local("/abs/a b".into())),
            (
                "s3://bucket",
                StoreUrl::S3 {
                    bucket: "bucket".into(),
                    prefix: "".into(),
                },
            ),
            (
                "s3://my-bucket/a/b/",
                StoreUrl::S3 {
                    bucket: "my-bucket".into(),
                    prefix: "a/b".into(),
                },
            ),
            ("memory://", StoreUrl::Memory { name: "".into() }),
            ("memory://x1", StoreUrl::Memory { name: "x1".into() }),
        ];
        for (text, want) in cases {
            assert_eq!(&parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "",
            "../x",
            "data/../../etc",
            "file:///data/../etc",
            "file:///data/%2e%2e/etc",
            "file://host/x",
            "gs://bucket",
            "s3://AK:SK@bucket/x",
            "s3://Bucket",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "memory://a/b",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn urls_round_trip_without_secrets() {
        assert_eq!(
            parse("s3://b/p/").unwrap().to_url_string(),
            "s3://b/p".to_string()
        );
        assert_eq!(
            parse("s3://b").unwrap().object_url("x/y.csv"),
            "s3://b/x/y.csv"
        );
        assert_eq!(
            parse("/a b").unwrap().object_url("c.txt"),
            "file:///a%20b/c.txt"
        );
        assert_eq!(
            parse("memory://").unwrap().object_url("k"),
            "memory:///k".to_string()
        );
    }

    #[test]
    fn object_paths() {
        for good in ["a", "a/b.csv", "x y/z"] {
            assert!(validate_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a//b", "a/", "./a", "a/../b", "a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_prefix("a/b/"), Ok("a/b"));
        assert_eq!(validate_prefix(""), Ok(""));
        assert!(validate_prefix("../").is_err());
    }
}
