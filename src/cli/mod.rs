//! The command line: parses arguments, calls into the library, prints. `anyhow` lives here and
//! in `main.rs` only.

mod check;
mod client;
mod follow;
mod jobs;
mod new;
mod run;
mod runs;
mod serve;
mod trigger;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::history::SqliteHistory;

/// ferry runs data jobs written in Lua.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: ./ferry.toml when present, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Talk to a running daemon's HTTP API instead of the local history (`trigger`, `runs`,
    /// `jobs`), e.g. http://127.0.0.1:7411. The token is read from FERRY_TOKEN.
    #[arg(long, global = true, env = "FERRY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job now (by name from scripts/, or a .lua file), recorded in the history.
    Run(run::RunArgs),
    /// Load and validate job scripts without running them.
    Check(check::CheckArgs),
    /// List, show, cancel and delete recorded runs.
    Runs(runs::RunsArgs),
    /// Queue a run for the daemon (through its API with --server, else in the local history,
    /// where a running `ferry serve` picks it up).
    Trigger(trigger::TriggerArgs),
    /// Run the daemon: cron schedules, watched folders, hot reload of scripts.
    Serve(serve::ServeArgs),
    /// Create a job script from a template (blank, export, import, backup, redis).
    New(new::NewArgs),
    /// List jobs with their triggers, next run, last run and load errors; pause and resume
    /// them.
    Jobs(jobs::JobsArgs),
    /// Internal: the worker process that executes runs.
    #[command(hide = true)]
    Worker,
    /// Internal: evaluates one job script's top level in a process of its own.
    #[command(hide = true)]
    EvalSpec,
}

/// Runs the command line and returns the process exit code.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run(args) => run::run(&config, args),
        Command::Check(args) => check::check(&config, args),
        Command::Runs(args) => runs::runs(&config, cli.server.as_deref(), args),
        Command::Trigger(args) => trigger::trigger(&config, cli.server.as_deref(), args),
        Command::Serve(args) => serve::serve(config, args),
        Command::Jobs(args) => jobs::jobs(&config, cli.server.as_deref(), args),
        Command::New(args) => new::new(&config, args),
        Command::Worker => {
            crate::jobs::worker::run_worker(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::EvalSpec => {
            crate::jobs::isolate::run_child(&config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_history(config: &Config) -> anyhow::Result<SqliteHistory> {
    SqliteHistory::open(&config.history_path).with_context(|| {
        format!(
            "cannot open the run history at {}",
            config.history_path.display()
        )
    })
}
