//! [`StoreRegistry`]: opens stores by config name or URL for one run, sharing memory stores and
//! reusing clients; and the artifact area, a local store of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::memory::InMemory;

use super::journal::Journal;
use super::local::LocalBackend;
use super::object::{ObjectBackend, Remote};
use super::s3::build_s3;
use super::store::{Backend, Inner, Store, Waiter};
use super::{Confinement, StoreUrl};
use super::{ErrorKind, Interrupt, Op, S3Options, Secret, StorageConfig, StorageError, StoreSpec};
use crate::sync::LockExt;

/// Opens stores for one run (or one daemon task): by config name or URL, with memory stores
/// shared by name for the registry's life and clients reused for identical specs.
pub struct StoreRegistry {
    config: StorageConfig,
    waiter: Waiter,
    memory: Mutex<HashMap<String, Arc<InMemory>>>,
    cache: Mutex<HashMap<String, Store>>,
}

impl std::fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRegistry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn cache_key(spec: &StoreSpec) -> String {
    let s = &spec.s3;
    let secret = |v: &Option<Secret>| v.as_ref().map(|x| x.expose().to_string());
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.name,
        spec.url,
        s.endpoint,
        s.region,
        secret(&s.access_key_id),
        secret(&s.secret_access_key),
        secret(&s.session_token),
        s.allow_http,
        s.path_style
    )
}

impl StoreRegistry {
    /// A registry over a configuration.
    pub fn new(config: StorageConfig) -> StoreRegistry {
        StoreRegistry {
            config,
            waiter: Waiter::default(),
            memory: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Makes every blocking call of the stores it opens give up once `interrupt` returns true.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> StoreRegistry {
        self.waiter = Waiter {
            interrupt: Some(interrupt),
        };
        self
    }

    /// The configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Opens a store by config name or URL; `opts` (S3 options) override the named store's.
    /// Opening a store also cleans up what an earlier, dead process left behind in it.
    pub fn open(&self, name_or_url: &str, opts: S3Options) -> Result<Store, StorageError> {
        let spec = self.config.resolve(name_or_url, opts).map_err(|m| {
            StorageError::new(
                name_or_url_shown(name_or_url),
                Op::Open,
                None,
                ErrorKind::Config(m),
            )
        })?;
        let key = cache_key(&spec);
        if let Some(s) = self.cache.lock_unpoisoned().get(&key) {
            return Ok(s.clone());
        }
        let store = self.open_spec(spec)?;
        match &store.inner.backend {
            Backend::Local(_) => {
                Journal::new(&self.config.state_dir).clean_temp_files();
            }
            Backend::Object(b) => {
                b.recover_uploads();
            }
        }
        self.cache.lock_unpoisoned().insert(key, store.clone());
        Ok(store)
    }

    pub(super) fn open_spec(&self, spec: StoreSpec) -> Result<Store, StorageError> {
        let label = spec.label();
        let fail = |k: ErrorKind| StorageError::new(label.clone(), Op::Open, None, k);
        let backend = match &spec.url {
            StoreUrl::Local(root) => {
                let confinement = Confinement::new(&self.config.allowed, &self.config.protected);
                Backend::Local(
                    LocalBackend::open(root, confinement, Journal::new(&self.config.state_dir))
                        .map_err(fail)?,
                )
            }
            StoreUrl::Memory { name } => {
                let mem = self
                    .memory
                    .lock_unpoisoned()
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone();
                Backend::Object(Arc::new(ObjectBackend {
                    store: mem.clone(),
                    multipart: mem,
                    prefix: String::new(),
                    remote: None,
                }))
            }
            StoreUrl::S3 { bucket, prefix } => {
                let s3 = build_s3(bucket, &spec.s3).map_err(fail)?;
                let s3 = Arc::new(s3);
                Backend::Object(Arc::new(ObjectBackend {
                    store: s3.clone(),
                    multipart: s3,
                    prefix: prefix.clone(),
                    remote: Some(Remote {
                        url: spec.url.to_url_string(),
                        name: spec.name.clone(),
                        endpoint: spec.s3.endpoint.clone(),
                        journal: Journal::new(&self.config.state_dir),
                    }),
                }))
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                spec,
                label,
                backend,
            }),
            waiter: self.waiter.clone(),
        })
    }
}

/// A name or URL as it may appear in a message: a URL with userinfo is cut down to its scheme.
fn name_or_url_shown(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) if rest.split('/').next().is_some_and(|h| h.contains('@')) => {
            format!("{scheme}://…")
        }
        _ => text.to_string(),
    }
}

/// The area where runs keep their own copies of their artifacts (`artifacts_dir`), as a local
/// store: writable here, though scripts cannot reach it (it is a protected path). A run's
/// copies live under `RUN_ID/NAME`, so what a run recorded stays what it recorded whatever later
/// runs write to the same store path.
pub fn artifact_area(config: &StorageConfig) -> Result<Store, StorageError> {
    let dir = &config.artifacts_dir;
    let label = format!("artifacts ({})", dir.display());
    std::fs::create_dir_all(dir)
        .map_err(|e| StorageError::new(label.clone(), Op::Open, None, ErrorKind::Io(e)))?;
    let mut own = StorageConfig::new(config.root.clone(), vec![dir.clone()]);
    own.state_dir = config.state_dir.clone();
    own.artifacts_dir = dir.clone();
    own.protected = vec![config.state_dir.clone()];
    let path = dir.to_str().ok_or_else(|| {
        StorageError::new(
            label.clone(),
            Op::Open,
            None,
            ErrorKind::Config("the artifacts folder's path is not UTF-8".into()),
        )
    })?;
    StoreRegistry::new(own).open(path, S3Options::default())
}
