//! Where a recorded artifact lives, for downloads.

use std::path::PathBuf;

use crate::config::Config;

/// The local file of an artifact recorded with a local store: a `file:///abs` URL, or a
/// directory relative to the project root. The file must lie under the project root.
pub fn local_path(config: &Config, store: &str, path: &str) -> Result<PathBuf, String> {
    let base = match store.strip_prefix("file://") {
        Some(abs) => PathBuf::from(abs),
        None if store.contains("://") => {
            return Err(format!(
                "artifact store {store} is not a local store; only local artifacts can be downloaded"
            ));
        }
        None => config.root.join(store),
    };
    let full = base.join(path.trim_start_matches('/'));
    let real = full
        .canonicalize()
        .map_err(|e| format!("artifact {} in {store}: {e}", path))?;
    let root = config.root.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root) {
        return Err(format!(
            "artifact {path} in {store} lies outside the project; refused"
        ));
    }
    Ok(real)
}
