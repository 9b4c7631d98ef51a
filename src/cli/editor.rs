//! Editor support for a project: ferry's LuaCATS annotations (`lua/types/ferry.lua`, embedded)
//! written to `.ferry/types/ferry.lua`, and a `.luarc.json` that points lua-language-server at
//! them and at `plugins/`. Used by `ferry init` and `ferry new`.
//!
//! The types file is ferry's own: a copy that starts with its `---@meta ferry` line is refreshed
//! when this ferry's annotations differ; any other file at that path, and `.luarc.json`, belong
//! to the user and are never overwritten.

use std::path::Path;

use anyhow::Context;

use super::new::write_new;

/// The annotations of the host API, as shipped.
pub(super) const TYPES: &str = include_str!("../../lua/types/ferry.lua");

/// Where the annotations go, relative to the project root.
pub(super) const TYPES_PATH: &str = ".ferry/types/ferry.lua";

/// The first line that marks a types file as ferry's own.
const TYPES_MARK: &str = "---@meta ferry";

/// Editor settings for lua-language-server: Lua 5.4, ferry's annotations and the plugins.
pub(super) const LUARC: &str = r#"{
  "$schema": "https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json",
  "runtime.version": "Lua 5.4",
  "diagnostics.globals": ["ferry"],
  "workspace.library": [".ferry/types", "plugins"],
  "workspace.checkThirdParty": false
}
"#;

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// It did not exist and was written.
    Created,
    /// It was ferry's own, older copy and was replaced.
    Refreshed,
    /// It exists and was left as it is.
    Kept,
}

/// Writes `.ferry/types/ferry.lua` under `root`: creates it, refreshes ferry's own older copy,
/// keeps anything else (and a copy that is current).
pub(super) fn write_types(root: &Path) -> anyhow::Result<Written> {
    let path = root.join(TYPES_PATH);
    if write_new(&path, TYPES)? {
        return Ok(Written::Created);
    }
    let current =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if current == TYPES || current.lines().next() != Some(TYPES_MARK) {
        return Ok(Written::Kept);
    }
    // Replaced atomically: an editor reading it never sees half a file.
    let tmp = path.with_extension("lua.ferry-tmp");
    std::fs::write(&tmp, TYPES).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(Written::Refreshed)
}

/// Prints what [`write_types`] did, with the path as the user sees it.
pub(super) fn report_types(written: Written, shown: &str) {
    match written {
        Written::Created => println!("created {shown} (ferry's API for lua-language-server)"),
        Written::Refreshed => println!("refreshed {shown} (ferry's API changed)"),
        Written::Kept => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_file_is_ferrys_own_and_anything_else_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_types(dir.path()).unwrap(), Written::Created);
        assert_eq!(write_types(dir.path()).unwrap(), Written::Kept);
        let path = dir.path().join(TYPES_PATH);
        std::fs::write(&path, format!("{TYPES_MARK}\n-- an older ferry\n")).unwrap();
        assert_eq!(write_types(dir.path()).unwrap(), Written::Refreshed);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TYPES);
        std::fs::write(&path, "-- the user's own\n").unwrap();
        assert_eq!(write_types(dir.path()).unwrap(), Written::Kept);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "-- the user's own\n"
        );
    }

    #[test]
    fn luarc_is_json_that_points_at_the_types() {
        let v: serde_json::Value = serde_json::from_str(LUARC).unwrap();
        let lib = v["workspace.library"].as_array().unwrap();
        let dir = Path::new(TYPES_PATH).parent().unwrap().to_str().unwrap();
        assert!(lib.iter().any(|l| l == dir), "{v}");
        assert!(TYPES.starts_with(TYPES_MARK));
    }
}
