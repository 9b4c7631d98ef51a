//! `ferry new NAME [--template blank|export|import|backup|redis]`: writes a job script from a
//! template, and the plugins it needs when the project has none of its own yet. A project without
//! a `.luarc.json` also gets editor support (see [`super::editor`]); one that has ferry's types
//! file gets it refreshed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::jobs::load_job;

/// Arguments of `ferry new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Job name: the script becomes scripts/NAME.lua (letters, digits, `_` and `-`).
    pub name: String,
    /// What the job starts from.
    #[arg(long, short, value_enum, default_value_t = Template::Blank)]
    pub template: Template,
}

/// The templates `ferry new` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// A job that logs and returns a summary.
    Blank,
    /// A table to a file (plugins/export.lua).
    Export,
    /// Files dropped into a folder to a table (plugins/import.lua).
    Import,
    /// A folder's nightly incremental backup (plugins/backup.lua).
    Backup,
    /// RDB files into Redis (plugins/redis.lua).
    Redis,
}

impl Template {
    fn source(self) -> &'static str {
        match self {
            Template::Blank => BLANK,
            Template::Export => include_str!("../../templates/export.lua"),
            Template::Import => include_str!("../../templates/import.lua"),
            Template::Backup => include_str!("../../templates/backup.lua"),
            Template::Redis => include_str!("../../templates/redis.lua"),
        }
    }

    /// The plugins the template's script requires, with their shipped source.
    fn plugins(self) -> &'static [(&'static str, &'static str)] {
        const EXPORT: (&str, &str) = SHIPPED_PLUGINS[0];
        const IMPORT: (&str, &str) = SHIPPED_PLUGINS[1];
        const BACKUP: (&str, &str) = SHIPPED_PLUGINS[2];
        const REDIS: (&str, &str) = SHIPPED_PLUGINS[3];
        match self {
            Template::Blank => &[],
            Template::Export => &[EXPORT],
            Template::Import => &[IMPORT],
            Template::Backup => &[BACKUP],
            Template::Redis => &[REDIS, BACKUP],
        }
    }
}

/// The shipped plugins, by name, with their source (embedded in the binary).
pub(super) const SHIPPED_PLUGINS: [(&str, &str); 4] = [
    ("export", include_str!("../../plugins/export.lua")),
    ("import", include_str!("../../plugins/import.lua")),
    ("backup", include_str!("../../plugins/backup.lua")),
    ("redis", include_str!("../../plugins/redis.lua")),
];

/// The blank job template, with `NAME` for the job name.
pub(super) const BLANK: &str = include_str!("../../templates/blank.lua");

/// Writes `path` only if it does not exist (create-new), so nothing is ever overwritten.
pub(super) fn write_new(path: &Path, text: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Creates the script (and missing plugins), then loads it as `ferry check` would.
pub fn new(config: &Config, args: NewArgs) -> anyhow::Result<ExitCode> {
    if !crate::jobs::scripts::valid_name(&args.name) {
        eprintln!(
            "error: `{}` is not a job name: use letters, digits, `_` and `-` (at most 64; `validate` is reserved)",
            args.name
        );
        return Ok(ExitCode::from(2));
    }
    let script = config.scripts_dir.join(format!("{}.lua", args.name));
    let shown = config.display_path(&script);
    let text = args.template.source().replace("NAME", &args.name);
    if !write_new(&script, &text)? {
        eprintln!("error: {shown} exists already; pick another name or delete it first");
        return Ok(ExitCode::from(1));
    }
    println!("created {shown}");
    for (plugin, source) in args.template.plugins() {
        let path = config.plugins_dir.join(format!("{plugin}.lua"));
        if write_new(&path, source)? {
            println!(
                "created {} (the shipped plugin)",
                config.display_path(&path)
            );
        }
    }
    editor_support(config)?;
    match load_job(config, &script) {
        Ok(_) => {
            println!(
                "next: edit it, then `ferry check {shown}` and `ferry run {}`",
                args.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // A project's own plugin of the same name may not fit the template.
            eprintln!("warning: {shown} was written but does not load:\n{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Writes `.luarc.json` and ferry's types when the project has no `.luarc.json` yet; refreshes
/// ferry's types file where it exists.
fn editor_support(config: &Config) -> anyhow::Result<()> {
    use super::editor::{LUARC, TYPES_PATH, report_types, write_types};
    let root = &config.root;
    let luarc = root.join(".luarc.json");
    if luarc.exists() && !root.join(TYPES_PATH).exists() {
        return Ok(());
    }
    let types = write_types(root)?;
    report_types(types, &config.display_path(&root.join(TYPES_PATH)));
    if write_new(&luarc, LUARC)? {
        println!("created {}", config.display_path(&luarc));
    }
    Ok(())
}
