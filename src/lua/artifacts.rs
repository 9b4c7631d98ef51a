//! `ctx.artifact`'s copy: a recorded artifact is copied into the run's own folder of the
//! artifacts area (`RUN_ID/NAME`, see [`crate::storage::artifact_area`]), hashed on the way, so
//! the file a run recorded is the file its download returns later, whatever later runs write to
//! the same store path. Size and SHA-256 are those of the copy.

use super::ArtifactRecord;
use super::host_error::{Classify, Kind, host_err};
use crate::storage::{self, StorageConfig, Store};

/// Copies `path` of `src` into the run's artifacts folder under `name` and returns the record.
pub(crate) fn keep(
    config: &StorageConfig,
    run_id: i64,
    src: &Store,
    path: &str,
    name: &str,
) -> mlua::Result<ArtifactRecord> {
    storage::validate_path(name).map_err(|m| {
        host_err(
            Kind::Invalid,
            format!("ctx.artifact: name {name:?} is not usable as a file name: {m}"),
        )
    })?;
    let area = storage::artifact_area(config).map_err(|e| e.to_lua_err())?;
    let copy = format!("{run_id}/{name}");
    let (size, digest) = storage::copy_hashed(src, path, &area, &copy).map_err(|e| {
        let kind = e.kind();
        host_err(
            kind,
            format!("ctx.artifact: keeping a copy of {path:?}: {e}"),
        )
    })?;
    Ok(ArtifactRecord {
        name: name.to_string(),
        store: src.url(),
        path: path.to_string(),
        size: Some(size),
        sha256: Some(digest.iter().map(|b| format!("{b:02x}")).collect()),
        copy: Some(copy),
    })
}
