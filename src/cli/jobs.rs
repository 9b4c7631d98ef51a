//! `ferry jobs [--json]`: every job with its triggers, next run, last run and load error;
//! `ferry jobs pause|resume NAME`.

use std::process::ExitCode;

use serde_json::Value;

use super::client::Client;
use super::open_history;
use crate::config::Config;
use crate::history::{History, RunFilter};
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
}

/// Runs `ferry jobs`.
pub fn jobs(config: &Config, server: Option<&str>, args: JobsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => list(config, server, args.json),
        Some(JobsCommand::Pause { name }) => pause(config, server, &name, true),
        Some(JobsCommand::Resume { name }) => pause(config, server, &name, false),
    }
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

/// Lists the jobs: as a running daemon sees them (`server`), or as the scripts folder holds
/// them now.
fn list(config: &Config, server: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<Value> = match server {
        Some(url) => Client::new(url, config)?.jobs()?,
        None => {
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
            rows
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<28} {:<26} {:<22} STATUS",
        "JOB", "TRIGGERS", "NEXT RUN", "LAST RUN"
    );
    for r in &rows {
        let mut triggers = Vec::new();
        if let Some(c) = r["schedule"]["cron"].as_str() {
            triggers.push(format!("cron {c}"));
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
        let status = match r["error"].as_str() {
            Some(e) if r["loaded"] == true => format!(
                "EDIT BROKEN (previous version active): {}",
                e.lines().next().unwrap_or("")
            ),
            Some(e) => format!("NOT LOADED: {}", e.lines().next().unwrap_or("")),
            None if r["paused"] == true => "PAUSED".into(),
            None => "ok".into(),
        };
        println!(
            "{:<20} {:<28} {:<26} {:<22} {status}",
            r["name"].as_str().unwrap_or(""),
            if triggers.is_empty() {
                "manual".into()
            } else {
                triggers.join(", ")
            },
            r["next_run"].as_str().unwrap_or("-"),
            last,
        );
    }
    Ok(ExitCode::SUCCESS)
}
