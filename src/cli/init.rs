//! `ferry init [DIR]`: makes a project skeleton: `scripts/` with a first job, `plugins/` with the
//! shipped plugins, a commented `ferry.toml` (every setting at its default), ferry's LuaCATS
//! annotations in `.ferry/types/` with a `.luarc.json` for lua-language-server, and a `.gitignore`
//! for `data/`. Never overwrites a user's file; refuses a folder that is already a project.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::editor::{LUARC, TYPES_PATH, report_types, write_types};
use super::new::{BLANK, SHIPPED_PLUGINS, write_new};

/// Arguments of `ferry init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project folder (created if missing; default: this folder).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// The commented configuration a new project starts with.
pub(super) const CONFIG: &str = include_str!("../../templates/ferry.toml");

/// Creates the skeleton and says what it made.
pub fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let root = &args.dir;
    let config = root.join(crate::config::CONFIG_FILE);
    if config.exists() {
        eprintln!(
            "error: {} exists already: {} is a ferry project",
            config.display(),
            root.display()
        );
        return Ok(ExitCode::from(super::exit::USAGE));
    }
    std::fs::create_dir_all(root.join("scripts"))
        .with_context(|| format!("creating {}", root.join("scripts").display()))?;
    let mut files: Vec<(PathBuf, String)> = vec![
        (config, CONFIG.to_string()),
        (root.join(".luarc.json"), LUARC.to_string()),
        (root.join(".gitignore"), "/data/\n".to_string()),
        (
            root.join("scripts/hello.lua"),
            BLANK.replace("NAME", "hello"),
        ),
    ];
    for (name, source) in SHIPPED_PLUGINS {
        files.push((root.join(format!("plugins/{name}.lua")), source.to_string()));
    }
    for (path, text) in &files {
        let shown = path.strip_prefix(root).unwrap_or(path).display();
        if write_new(path, text)? {
            println!("created {shown}");
        } else {
            println!("kept {shown} (exists already)");
        }
    }
    report_types(write_types(root)?, TYPES_PATH);
    let cd = if root == std::path::Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", root.display())
    };
    println!(
        "next: {cd}ferry run hello -p name=Ada, then ferry serve (web UI and API at http://127.0.0.1:7411/)"
    );
    Ok(ExitCode::SUCCESS)
}
