//! What the storage layer needs to know: the allowed roots of local stores, the paths no store
//! may touch, the named stores from `ferry.toml`, and where pending writes are journaled.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::url::StoreUrl;

/// A credential. Its `Debug` form is `***`, so it never reaches a log through a `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (building the client).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Options of an S3 store, from `ferry.toml` or from the script. Every field is optional; the
/// standard `AWS_*` environment variables fill what is not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region; default `us-east-1`.
    pub region: Option<String>,
    /// Access key id (a secret: hidden from logs).
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// Allow plain `http://` endpoints. Implied by an `http://` endpoint unless set to false.
    pub allow_http: Option<bool>,
    /// Path-style requests (`endpoint/bucket/key`, the default) rather than virtual-hosted
    /// (`bucket.endpoint/key`).
    pub path_style: Option<bool>,
}

impl S3Options {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        *self == S3Options::default()
    }

    /// These options, with the unset ones taken from `base`.
    pub fn over(self, base: &S3Options) -> S3Options {
        S3Options {
            endpoint: self.endpoint.or_else(|| base.endpoint.clone()),
            region: self.region.or_else(|| base.region.clone()),
            access_key_id: self.access_key_id.or_else(|| base.access_key_id.clone()),
            secret_access_key: self
                .secret_access_key
                .or_else(|| base.secret_access_key.clone()),
            session_token: self.session_token.or_else(|| base.session_token.clone()),
            allow_http: self.allow_http.or(base.allow_http),
            path_style: self.path_style.or(base.path_style),
        }
    }

    /// The credential values, for redaction.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        [
            &self.access_key_id,
            &self.secret_access_key,
            &self.session_token,
        ]
        .into_iter()
        .flatten()
        .map(Secret::expose)
    }

    /// Checks the options on their own and against the store URL.
    pub fn validate(&self, url: &StoreUrl) -> Result<(), String> {
        if !matches!(url, StoreUrl::S3 { .. }) && !self.is_empty() {
            return Err(
                "endpoint, region, keys, allow_http and path_style apply to s3:// stores only"
                    .into(),
            );
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(
                "access_key_id and secret_access_key go together: give both or neither".into(),
            );
        }
        if let Some(ep) = &self.endpoint {
            let parsed = url::Url::parse(ep).map_err(|e| format!("endpoint {ep:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "endpoint {ep:?}: expected an http:// or https:// URL"
                ));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err("endpoint: credentials do not belong in the URL; use access_key_id and secret_access_key".into());
            }
            if parsed.scheme() == "http" && self.allow_http == Some(false) {
                return Err(format!(
                    "endpoint {ep:?} is plain http but allow_http is false"
                ));
            }
        }
        Ok(())
    }
}

/// A store as configured: its URL and options, and its name when it comes from `ferry.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    /// The name under `[stores.NAME]`, if any.
    pub name: Option<String>,
    /// Where the objects are.
    pub url: StoreUrl,
    /// S3 options (empty for other stores).
    pub s3: S3Options,
}

impl StoreSpec {
    /// How the store is shown in messages: `NAME (URL)` or just the URL. Never credentials.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.url.to_url_string()),
            None => self.url.to_url_string(),
        }
    }
}

/// The validated storage configuration.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The project root; relative store paths start here.
    pub root: PathBuf,
    /// Local stores must lie under one of these folders (absolute).
    pub allowed: Vec<PathBuf>,
    /// Paths no store may read or write, even under an allowed root: the history database and
    /// the storage journal.
    pub protected: Vec<PathBuf>,
    /// Where pending writes (temp files, multipart uploads) are journaled for recovery.
    pub state_dir: PathBuf,
    /// Where runs keep their own copies of their artifacts (see [`super::artifact_area`]);
    /// protected like the journal, so no script can change a recorded artifact.
    pub artifacts_dir: PathBuf,
    /// Named stores from `[stores.NAME]`.
    pub stores: BTreeMap<String, StoreSpec>,
}

impl StorageConfig {
    /// A configuration for a project root with the given allowed roots and no named stores; the
    /// journal goes to `ROOT/data/.ferry/pending`.
    pub fn new(root: impl Into<PathBuf>, allowed: Vec<PathBuf>) -> StorageConfig {
        let root = root.into();
        let state_dir = root.join("data").join(".ferry").join("pending");
        let artifacts_dir = root.join("data").join(".ferry").join("artifacts");
        StorageConfig {
            protected: vec![state_dir.clone(), artifacts_dir.clone()],
            root,
            allowed,
            state_dir,
            artifacts_dir,
            stores: BTreeMap::new(),
        }
    }

    /// Adds an allowed root (a job's watch folder, say).
    pub fn allow_root(&mut self, dir: &Path) {
        let dir = self.root.join(dir);
        if !self.allowed.contains(&dir) {
            self.allowed.push(dir);
        }
    }

    /// Every credential value of the named stores, plus the standard AWS credential variables
    /// of the environment, for redaction.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .stores
            .values()
            .flat_map(|s| s.s3.secret_values().map(str::to_string))
            .collect();
        for var in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
        ] {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                out.push(v);
            }
        }
        out
    }

    /// Resolves a store name or URL, with options from the script on top of the named store's.
    pub fn resolve(&self, name_or_url: &str, opts: S3Options) -> Result<StoreSpec, String> {
        if let Some(named) = self.stores.get(name_or_url) {
            let s3 = opts.over(&named.s3);
            s3.validate(&named.url)
                .map_err(|m| format!("store {name_or_url}: {m}"))?;
            return Ok(StoreSpec {
                name: named.name.clone(),
                url: named.url.clone(),
                s3,
            });
        }
        let url = StoreUrl::parse(name_or_url, &self.root).map_err(|m| {
            if self.stores.is_empty() || name_or_url.contains(['/', ':', '.']) {
                m
            } else {
                let names: Vec<&str> = self.stores.keys().map(String::as_str).collect();
                format!("{m} (named stores: {})", names.join(", "))
            }
        })?;
        opts.validate(&url)?;
        // A URL that matches a named store's gets that store's options (its credentials), so a
        // recorded artifact URL can be opened again by the daemon.
        let base = self
            .stores
            .values()
            .find(|s| s.url == url)
            .map(|s| s.s3.clone())
            .unwrap_or_default();
        Ok(StoreSpec {
            name: None,
            url,
            s3: opts.over(&base),
        })
    }
}
