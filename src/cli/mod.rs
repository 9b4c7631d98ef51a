//! The command line: parses arguments, calls into the library, prints. `anyhow` lives here and
//! in `main.rs` only.

mod check;
mod client;
mod editor;
mod follow;
mod hosts;
mod init;
mod jobs;
mod new;
mod run;
mod runs;
mod serve;
mod table;
mod tokens;
mod trigger;
mod when;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::history::HistoryHandle;

/// ferry runs data jobs written in Lua.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file; its folder is the project root (default: the nearest ferry.toml in this
    /// folder or above, else built-in defaults).
    #[arg(long, global = true, env = "FERRY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The project folder (default: the nearest folder, from here upwards, holding a
    /// ferry.toml or a scripts/ folder).
    #[arg(long, global = true, env = "FERRY_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// How the daemon writes its log on stderr: text for people, json (one object per line)
    /// for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FERRY_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// For `trigger`, `runs` and `jobs` only (refused elsewhere): talk to a running daemon's
    /// HTTP API instead of the local history, e.g. http://127.0.0.1:7411. The token is read
    /// from FERRY_TOKEN, else from [api] token of ferry.toml.
    /// FERRY_SERVER gives a default to these three commands. Hidden from the help of every
    /// command: the three that take it say so in their own description.
    #[arg(long, global = true, hide = true, value_name = "URL")]
    pub server: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of ferry's own log (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// The shells `ferry completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash: `ferry completions bash > /etc/bash_completion.d/ferry`.
    Bash,
    /// zsh: into a folder of `$fpath` as `_ferry`.
    Zsh,
    /// fish: `~/.config/fish/completions/ferry.fish`.
    Fish,
}

/// Exit codes: distinct for each way a command can end.
pub mod exit {
    /// The run, check or operation failed (a run that did not succeed, a script with errors).
    pub const FAILED: u8 = 1;
    /// Usage or configuration: bad arguments or params, an unknown job, an invalid ferry.toml,
    /// no project here, a request the daemon refused.
    pub const USAGE: u8 = 2;
    /// The daemon named by `--server` could not be reached.
    pub const UNREACHABLE: u8 = 3;
    /// Anything else: the history cannot be read, a file cannot be written, a bug.
    pub const INTERNAL: u8 = 4;
}

/// A command refused to do what was asked as it was asked (exit code 2): a setting that is
/// unsafe or unusable, a project another process owns.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The exit code for an error that ended a command (see [`exit`]).
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<crate::config::ConfigError>().is_some()
            || cause.downcast_ref::<Refused>().is_some()
            || matches!(
                cause.downcast_ref::<crate::daemon::lock::LockError>(),
                Some(crate::daemon::lock::LockError::Held { .. })
            )
        {
            return exit::USAGE;
        }
        if let Some(r) = cause.downcast_ref::<client::ApiRefusal>() {
            return if r.status >= 500 {
                exit::INTERNAL
            } else {
                exit::USAGE
            };
        }
        if let Some(e) = cause.downcast_ref::<reqwest::Error>()
            && (e.is_connect() || e.is_timeout())
        {
            return exit::UNREACHABLE;
        }
    }
    exit::INTERNAL
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new project: scripts/, plugins/, a commented ferry.toml, .luarc.json and ferry's Lua types.
    Init(init::InitArgs),
    /// Run a job now (by name from scripts/, or a .lua file), recorded in the history.
    Run(run::RunArgs),
    /// Load and validate job scripts without running them.
    Check(check::CheckArgs),
    /// List, show, cancel and delete recorded runs. `ferry --server URL runs ...` (or
    /// FERRY_SERVER) asks a running daemon's API instead of the local history.
    Runs(runs::RunsArgs),
    /// Queue a run for the daemon: `ferry --server URL trigger ...` (or FERRY_SERVER) through its
    /// API, else in the local history, where a running `ferry serve` picks it up.
    Trigger(trigger::TriggerArgs),
    /// Run the daemon: cron schedules, watched folders, hot reload of scripts.
    Serve(serve::ServeArgs),
    /// Create a job script from a template (blank, export, import, backup, redis).
    New(new::NewArgs),
    /// List jobs with their triggers, next run, last run and load errors; pause and resume
    /// them. `ferry --server URL jobs ...` (or FERRY_SERVER) asks a running daemon's API.
    Jobs(jobs::JobsArgs),
    /// Manage named API tokens with a scope (read, run, admin) in the local history.
    Tokens(tokens::TokensArgs),
    /// Show the audit log (who changed what through the API), from the local history.
    Audit(tokens::AuditArgs),
    /// List the daemons serving this project's history (several with a PostgreSQL history):
    /// host, API address, load and the runs each one runs.
    Hosts(hosts::HostsArgs),
    /// Move the history: `ferry history migrate --to postgres://…` copies the SQLite history
    /// into PostgreSQL.
    History(hosts::HistoryArgs),
    /// Print shell completions for bash, zsh or fish.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff): `ferry man > /usr/local/share/man/man1/ferry.1`.
    Man,
    /// Internal: the worker process that executes runs.
    #[command(hide = true)]
    Worker,
    /// Internal: evaluates one job script's top level in a process of its own.
    #[command(hide = true)]
    EvalSpec,
}

/// Runs the command line and returns the process exit code.
pub fn main(mut cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that need no project.
    match &cli.command {
        Command::Init(args) => return init::init(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut cmd, "ferry", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if cli.server.is_some()
        && !matches!(
            cli.command,
            Command::Runs(_) | Command::Trigger(_) | Command::Jobs(_)
        )
    {
        eprintln!(
            "error: --server applies to `trigger`, `runs` and `jobs` only; this command works \
             on the local project"
        );
        return Ok(ExitCode::from(exit::USAGE));
    }
    if matches!(
        cli.command,
        Command::Runs(_) | Command::Trigger(_) | Command::Jobs(_)
    ) && cli.server.is_none()
    {
        cli.server = std::env::var("FERRY_SERVER").ok().filter(|s| !s.is_empty());
    }
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let located = crate::config::locate(&cwd, cli.config.as_deref(), cli.root.as_deref())?;
    let client_only = cli.server.is_some()
        && matches!(
            cli.command,
            Command::Runs(_) | Command::Trigger(_) | Command::Jobs(_)
        );
    let config = match located {
        Some(at) => Config::load_at(&at)?,
        // A client of a daemon needs no project and creates nothing.
        None if client_only => Config::defaults_at(cwd)?,
        None => return Err(crate::config::ConfigError::NoProject { cwd }.into()),
    };
    match cli.command {
        Command::Run(args) => run::run(&config, args),
        Command::Check(args) => check::check(&config, args),
        Command::Runs(args) => runs::runs(&config, cli.server.as_deref(), args),
        Command::Trigger(args) => trigger::trigger(&config, cli.server.as_deref(), args),
        Command::Serve(args) => serve::serve(config, args),
        Command::Jobs(args) => jobs::jobs(&config, cli.server.as_deref(), args),
        Command::New(args) => new::new(&config, args),
        Command::Tokens(args) => tokens::tokens(&config, args),
        Command::Audit(args) => tokens::audit(&config, args),
        Command::Hosts(args) => hosts::hosts(&config, args),
        Command::History(args) => hosts::history(&config, args),
        Command::Worker => {
            crate::jobs::worker::run_worker(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::EvalSpec => {
            crate::jobs::isolate::run_child(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(_) | Command::Completions { .. } | Command::Man => Ok(ExitCode::SUCCESS),
    }
}

fn open_history(config: &Config) -> anyhow::Result<HistoryHandle> {
    crate::history::open(config).with_context(|| {
        format!(
            "cannot open the run history at {}",
            config.history_path.display()
        )
    })
}
