//! `ferry hosts` (the daemons serving this project's history, with their load and runs) and
//! `ferry history migrate --to postgres://…` (a SQLite history copied into PostgreSQL).

use std::process::ExitCode;

use anyhow::Context;

use super::open_history;
use super::table::Table;
use super::when;
use crate::config::{Config, PostgresTarget};
use crate::history::{PostgresHistory, SqliteHistory};

/// Arguments of `ferry hosts`.
#[derive(Debug, clap::Args)]
pub struct HostsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ferry history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: HistoryCommand,
}

/// The `history` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum HistoryCommand {
    /// Copy this project's SQLite history (runs, logs, artifacts, state, files, versions,
    /// tokens, audit, notifications) into an empty PostgreSQL database, then point `[history]
    /// url` at it.
    Migrate {
        /// `postgres://USER@HOST[:PORT]/DATABASE` (no password in it).
        #[arg(long)]
        to: String,
        /// The environment variable holding the database password.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
}

/// How long ago a daemon's heartbeat may be for it to count as live.
const LIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// One live daemon and the runs it owns, for `--json`.
#[derive(serde::Serialize)]
struct HostView {
    #[serde(flatten)]
    host: crate::history::HostRecord,
    runs: Vec<i64>,
}

/// Runs `ferry hosts`.
pub fn hosts(config: &Config, args: HostsArgs) -> anyhow::Result<ExitCode> {
    let history = open_history(config)?;
    let hosts = history.hosts(LIVE)?;
    let open = history.owned_open_runs()?;
    let views: Vec<HostView> = hosts
        .into_iter()
        .map(|h| HostView {
            runs: open
                .iter()
                .filter(|r| r.owner.as_deref() == Some(h.owner.as_str()))
                .map(|r| r.id)
                .collect(),
            host: h,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        eprintln!(
            "no ferry serve has been heard of in the last {}s",
            LIVE.as_secs()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["HOST", "PID", "API", "STARTED", "RUNNING", "LOAD", "RUNS"]);
    for v in &views {
        let pid = v
            .host
            .owner
            .parse::<crate::jobs::owner::Owner>()
            .map(|o| o.pid.to_string())
            .unwrap_or_else(|_| "?".into());
        let runs: Vec<String> = v.runs.iter().map(i64::to_string).collect();
        table.row(vec![
            v.host.host.clone(),
            pid,
            v.host.listen.clone(),
            when::local_and_utc(v.host.started_at),
            format!("{}/{}", v.host.running, v.host.capacity),
            format!("{:.2}", v.host.load),
            if runs.is_empty() {
                "-".into()
            } else {
                runs.join(" ")
            },
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// Runs `ferry history`.
pub fn history(config: &Config, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HistoryCommand::Migrate { to, password_env } => {
            let password = match password_env {
                Some(var) => Some(std::env::var(&var).map_err(|_| {
                    super::Refused(format!("environment variable {var} is not set"))
                })?),
                None => None,
            };
            let target = PostgresTarget::new(&to, password)
                .map_err(|m| super::Refused(format!("--to: {m}")))?;
            if !config.history_path.is_file() {
                return Err(super::Refused(format!(
                    "there is no SQLite history at {} to copy",
                    config.history_path.display()
                ))
                .into());
            }
            let from = SqliteHistory::open(&config.history_path).with_context(|| {
                format!(
                    "cannot open the history at {}",
                    config.history_path.display()
                )
            })?;
            let to_history = PostgresHistory::open(&target)?;
            let report = crate::history::copy_into_postgres(&from, &to_history)?;
            for (table, n) in &report.tables {
                eprintln!("{table}: {n}");
            }
            eprintln!(
                "copied {} into {}; set [history] url = {:?} in ferry.toml to use it",
                config.history_path.display(),
                target.url,
                target.url
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
