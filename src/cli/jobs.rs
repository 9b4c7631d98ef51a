//! `ferry jobs [--json]`: every job with its triggers, next run, last run and load error;
//! `ferry jobs pause|resume NAME`; `ferry jobs history NAME` (the versions of its script).

use std::process::ExitCode;

use serde_json::Value;

use super::client::Client;
use super::open_history;
use super::table::Table;
use super::when;
use crate::config::Config;
use crate::history::RunFilter;
use crate::jobs::registry::Registry;
use crate::jobs::view::JobView;

/// Arguments of `ferry jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<JobsCommand>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `jobs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Pause a job: its schedule records `skipped` runs and files wait in its folder until it is
    /// resumed; runs asked for by hand or through the API still run. Kept across restarts.
    Pause {
        /// The job.
        name: String,
    },
    /// Resume a paused job.
    Resume {
        /// The job.
        name: String,
    },
    /// List the versions of a job's script that loaded, newest first: SHA-256, when, and
    /// whether it came through the API (with the token's name) or an edit of the file.
    History {
        /// The job.
        name: String,
    },
    /// Show what changed between two versions of a job's script (a unified diff), by hash or
    /// a unique prefix of one (at least 4 characters); TO defaults to the newest version.
    Diff {
        /// The job.
        name: String,
        /// The older version.
        from: String,
        /// The newer version (default: the newest).
        to: Option<String>,
    },
}

/// How many versions `ferry jobs history` shows.
const HISTORY_LIMIT: u32 = 100;

/// Runs `ferry jobs`.
pub fn jobs(config: &Config, server: Option<&str>, args: JobsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => list(config, server, args.json),
        Some(JobsCommand::Pause { name }) => pause(config, server, &name, true),
        Some(JobsCommand::Resume { name }) => pause(config, server, &name, false),
        Some(JobsCommand::History { name }) => history(config, server, &name, args.json),
        Some(JobsCommand::Diff { name, from, to }) => {
            diff(config, server, &name, &from, to.as_deref())
        }
    }
}

/// Prints the unified diff between two versions of a job's script.
fn diff(
    config: &Config,
    server: Option<&str>,
    name: &str,
    from: &str,
    to: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let client = server.map(|url| Client::new(url, config)).transpose()?;
    let hashes: Vec<String> = match &client {
        Some(c) => c
            .versions(name, 500)?
            .iter()
            .filter_map(|v| v["hash"].as_str().map(str::to_string))
            .collect(),
        None => open_history(config)?
            .versions(name, 500, 0)?
            .0
            .into_iter()
            .map(|v| v.hash)
            .collect(),
    };
    if hashes.is_empty() {
        eprintln!("error: job {name:?} has no recorded versions");
        return Ok(ExitCode::from(super::exit::USAGE));
    }
    let pick = |given: &str| -> Result<String, String> {
        if given.len() < 4 {
            return Err(format!(
                "version {given:?}: give at least 4 characters of its hash"
            ));
        }
        let found: Vec<&String> = hashes.iter().filter(|h| h.starts_with(given)).collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!(
                "job {name:?} has no version {given:?} (see `ferry jobs history {name}`)"
            )),
            _ => Err(format!(
                "version {given:?} is ambiguous: {} versions start with it",
                found.len()
            )),
        }
    };
    let (a, b) = match (
        pick(from),
        to.map(pick).unwrap_or_else(|| Ok(hashes[0].clone())),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(m), _) | (_, Err(m)) => {
            eprintln!("error: {m}");
            return Ok(ExitCode::from(super::exit::USAGE));
        }
    };
    let source = |hash: &str| -> anyhow::Result<String> {
        match &client {
            Some(c) => c.version_source(name, hash),
            None => open_history(config)?
                .version(name, hash)?
                .and_then(|v| v.source)
                .ok_or_else(|| anyhow::anyhow!("version {hash} of {name:?} has no source")),
        }
    };
    let (old, new) = (source(&a)?, source(&b)?);
    let text = similar::TextDiff::from_lines(&old, &new);
    print!(
        "{}",
        text.unified_diff().context_radius(3).header(
            &format!("{name}.lua@{}", &a[..12]),
            &format!("{name}.lua@{}", &b[..12])
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// Pauses or resumes a job, through a daemon's API or in the local history (a running daemon
/// notices within a second).
fn pause(
    config: &Config,
    server: Option<&str>,
    name: &str,
    paused: bool,
) -> anyhow::Result<ExitCode> {
    let changed = match server {
        Some(url) => Client::new(url, config)?.pause(name, paused)?,
        None => {
            let path = config.scripts_dir.join(format!("{name}.lua"));
            if !path.is_file() {
                eprintln!(
                    "error: no job {name:?}: {} does not exist",
                    config.display_path(&path)
                );
                return Ok(ExitCode::from(2));
            }
            let history = open_history(config)?;
            if paused {
                history.pause_job(name, Some("cli"))?
            } else {
                history.resume_job(name)?
            }
        }
    };
    let what = if paused { "paused" } else { "resumed" };
    if changed {
        println!("job {name} {what}");
    } else {
        println!("job {name} was {what} already");
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the versions of a job's script, from a daemon's API or the local history.
fn history(
    config: &Config,
    server: Option<&str>,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let rows: Vec<Value> = match server {
        Some(url) => Client::new(url, config)?.versions(name, HISTORY_LIMIT)?,
        None => {
            let (items, _) = open_history(config)?.versions(name, HISTORY_LIMIT, 0)?;
            items
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("job {name:?} has no recorded versions");
        return Ok(ExitCode::from(2));
    }
    let mut table = Table::new(&["VERSION", "RECORDED", "ORIGIN"]);
    for r in &rows {
        table.row(vec![
            r["hash"].as_str().unwrap_or("").to_string(),
            r["created_at"]
                .as_str()
                .map(when::show_text)
                .unwrap_or_default(),
            match r["written_by"].as_str() {
                Some(by) => format!("{} ({by})", r["origin"].as_str().unwrap_or("")),
                None => r["origin"].as_str().unwrap_or("").to_string(),
            },
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// Lists the jobs: as a daemon sees them (`server`, else the daemon running for this project,
/// if any), or as the scripts folder holds them now.
fn list(config: &Config, server: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<Value> = match server {
        Some(url) => Client::new(url, config)?.jobs()?,
        None => match running_daemon_jobs(config) {
            Some(rows) => rows,
            None => local_jobs(config)?,
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", table(&rows).render());
    Ok(ExitCode::SUCCESS)
}

/// The jobs as the daemon serving this project sees them (its registry keeps the last good
/// version of a script whose edit does not load, which a fresh scan cannot know), or `None`
/// when no daemon runs here or it cannot be asked.
fn running_daemon_jobs(config: &Config) -> Option<Vec<Value>> {
    let holder = crate::daemon::lock::running(config)?;
    let url = holder.listen?;
    match Client::new(&url, config).and_then(|c| c.jobs()) {
        Ok(rows) => Some(rows),
        Err(e) => {
            eprintln!(
                "note: the daemon of this project (pid {}) could not be asked ({e:#}); \
                 showing the scripts as they are on disk",
                holder.pid
            );
            None
        }
    }
}

/// The jobs as the scripts folder holds them now.
fn local_jobs(config: &Config) -> anyhow::Result<Vec<Value>> {
    let mut registry = Registry::default();
    registry.rescan(config);
    let history = open_history(config)?;
    let paused = history.paused_jobs()?;
    let mut rows = Vec::new();
    for (name, entry) in registry.entries() {
        let (last, _) = history.list_runs(&RunFilter {
            job: Some(name.clone()),
            limit: 1,
            ..Default::default()
        })?;
        let since = paused.iter().find(|(j, _)| j == name).map(|(_, t)| *t);
        rows.push(serde_json::to_value(
            JobView::new(config, name, entry, last.first(), None).with_paused(since),
        )?);
    }
    Ok(rows)
}

/// The jobs as a table; a load error's further problems follow on lines of their own.
fn table(rows: &[Value]) -> Table {
    let mut table = Table::new(&["JOB", "TRIGGERS", "NEXT RUN", "LAST RUN", "STATUS"]);
    for r in rows {
        let mut triggers = Vec::new();
        if let Some(c) = r["schedule"]["cron"].as_str() {
            match r["schedule"]["timezone"].as_str() {
                Some(tz) if tz != "UTC" => triggers.push(format!("cron {c} ({tz})")),
                _ => triggers.push(format!("cron {c}")),
            }
        }
        if let Some(p) = r["watch"]["path"].as_str() {
            triggers.push(format!(
                "watch {p}/{}",
                r["watch"]["pattern"].as_str().unwrap_or("*")
            ));
        }
        let last = match r["last_run"].as_object() {
            Some(l) => format!("#{} {}", l["id"], l["state"].as_str().unwrap_or("")),
            None => "-".into(),
        };
        let problems: Vec<&str> = r["load_error"]["problems"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let first = problems.first().copied().unwrap_or("");
        let status = match r["active_version"].as_str() {
            Some("previous") => format!("active: previous version; reload failed: {first}"),
            _ if !problems.is_empty() => format!("NOT LOADED: {first}"),
            _ if r["paused"] == true => "PAUSED".into(),
            _ => "ok".into(),
        };
        table.row(vec![
            r["name"].as_str().unwrap_or("").to_string(),
            if triggers.is_empty() {
                "manual".into()
            } else {
                triggers.join(", ")
            },
            r["next_run"]
                .as_str()
                .map(when::show_text)
                .unwrap_or_else(|| "-".into()),
            last,
            status,
        ]);
        for more in problems.iter().skip(1) {
            table.row(vec![
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("  also: {more}"),
            ]);
        }
    }
    table
}
