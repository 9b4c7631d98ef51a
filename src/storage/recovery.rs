//! Cleanup after processes that died mid-write: their temp files and multipart uploads.

use super::journal::{Journal, Pending};
use super::registry::StoreRegistry;
use super::store::Backend;
use super::{S3Options, StorageConfig};

/// What [`recover`] cleaned up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Temp files removed.
    pub temp_files: usize,
    /// Multipart uploads aborted.
    pub uploads: usize,
}

/// Cleans up after processes that died mid-write: removes their temp files and aborts their
/// multipart uploads on the named S3 stores (uploads to stores opened with inline credentials
/// are aborted when such a store is next opened). For the daemon's start; safe while other
/// processes write, since only entries of dead processes are touched.
pub fn recover(config: &StorageConfig) -> Recovery {
    let journal = Journal::new(&config.state_dir);
    let temp_files = journal.clean_temp_files();
    let mut uploads = 0;
    let registry = StoreRegistry::new(config.clone());
    let mut seen = std::collections::HashSet::new();
    for (_, pending) in journal.entries() {
        let Pending::Upload {
            store,
            name,
            endpoint,
            ..
        } = &pending
        else {
            continue;
        };
        if !pending.is_stale() || !seen.insert((store.clone(), endpoint.clone())) {
            continue;
        }
        let target = name
            .as_deref()
            .filter(|n| config.stores.contains_key(*n))
            .unwrap_or(store.as_str());
        let Ok(spec) = config.resolve(target, S3Options::default()) else {
            continue;
        };
        if spec.s3.endpoint != *endpoint {
            continue;
        }
        match registry.open_spec(spec) {
            Ok(s) => {
                if let Backend::Object(b) = &s.inner.backend {
                    uploads += b.recover_uploads();
                }
            }
            Err(e) => tracing::warn!("cannot open {store} to abort unfinished uploads: {e}"),
        }
    }
    Recovery {
        temp_files,
        uploads,
    }
}
