//! `ferry runs list|show|cancel|delete`: the run history from the command line.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::client::{ApiRefusal, Client, RunDetail};
use super::open_history;
use crate::api::wire::{self, ArtifactView, LogLineView, NotificationView, RunView, run_views};
use crate::config::Config;
use crate::history::{CancelOutcome, HistoryError, RunFilter, RunRecord, RunState, format_time};
use crate::units::format_duration;

/// Arguments of `ferry runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// What to do with runs.
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// The `runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this job.
        #[arg(long)]
        job: Option<String>,
        /// Only runs in this state (repeatable).
        #[arg(long = "state", value_parser = parse_state)]
        states: Vec<RunState>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one run with its logs and artifacts.
    Show {
        /// The run id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's log lines; with -f, follow them until the run ends (exit 0 when it
    /// succeeded, 1 otherwise).
    Logs {
        /// The run id.
        id: i64,
        /// Follow new lines until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only lines after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Print each line as a JSON object (`{"at", "level", "message"}`), one per line.
        #[arg(long)]
        json: bool,
    },
    /// Ask queued or running runs to stop.
    Cancel {
        /// Run ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Print the outcome of each as JSON (`[{"id", "ok", "result"}]`).
        #[arg(long)]
        json: bool,
    },
    /// Run a finished run again: same params (and the same watched file, moved back from
    /// failed/); trigger kind `rerun`.
    Rerun {
        /// The run id.
        id: i64,
        /// Print the new run as JSON (`{"id", "state", "of"}`).
        #[arg(long)]
        json: bool,
    },
    /// Delete finished runs with their logs and artifact records.
    Delete {
        /// Run ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Print the outcome of each as JSON (`[{"id", "ok", "result"}]`).
        #[arg(long)]
        json: bool,
    },
}

fn parse_state(s: &str) -> Result<RunState, String> {
    s.parse()
}

/// Where runs are read from: the local history, or a daemon's API.
enum Backend {
    Local(crate::history::HistoryHandle),
    Remote(Client),
}

impl Backend {
    fn list(&self, filter: &RunFilter) -> anyhow::Result<(Vec<RunRecord>, u64)> {
        match self {
            Backend::Local(h) => Ok(h.list_runs(filter)?),
            Backend::Remote(c) => c.runs(filter.job.as_deref(), &filter.states, filter.limit),
        }
    }

    fn show(&self, id: i64) -> anyhow::Result<Option<RunDetail>> {
        match self {
            Backend::Local(h) => match h.get_run(id) {
                Ok(r) => Ok(Some((
                    r,
                    h.logs(id, 0, 0)?,
                    h.artifacts(id)?,
                    crate::history::NotificationLog::notifications(&**h, id)?,
                ))),
                Err(HistoryError::NotFound(_)) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Backend::Remote(c) => match c.run(id) {
                Ok(v) => Ok(Some(v)),
                Err(e)
                    if e.downcast_ref::<ApiRefusal>()
                        .is_some_and(|r| r.status == 404) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Asks a run to stop; returns what happened, for the user.
    fn cancel(&self, id: i64) -> anyhow::Result<&'static str> {
        Ok(match self {
            Backend::Local(h) => match h.request_cancel(id)? {
                CancelOutcome::Closed => "cancelled (it had not started)",
                CancelOutcome::Requested => "cancel requested",
                CancelOutcome::AlreadyEnded => "already finished",
            },
            Backend::Remote(c) => match c.cancel(id)? {
                true => "cancel requested",
                false => "already finished",
            },
        })
    }

    /// Queues a run again; returns the new run's id and state.
    fn rerun(&self, config: &Config, id: i64) -> anyhow::Result<(i64, String)> {
        match self {
            Backend::Local(h) => {
                let record = h.get_run(id)?;
                let path = config.scripts_dir.join(format!("{}.lua", record.job));
                let spec = crate::jobs::load_job(config, &path)?;
                let sealer = crate::jobs::seal::Sealer::for_config(config)?;
                let r = crate::jobs::rerun::rerun(config, &**h, &sealer, &spec, &record)?;
                Ok((r.id, "queued".into()))
            }
            Backend::Remote(c) => c.rerun(id),
        }
    }

    fn delete(&self, config: &Config, id: i64) -> anyhow::Result<()> {
        match self {
            Backend::Local(h) => {
                h.delete_run(id)?;
                // The run's own artifact copies go with it.
                crate::jobs::artifacts::remove_run(&config.storage, id)?;
                Ok(())
            }
            Backend::Remote(c) => c.delete(id),
        }
    }
}

/// Runs a `runs` subcommand, against the local history or a daemon (`server`).
pub fn runs(config: &Config, server: Option<&str>, args: RunsArgs) -> anyhow::Result<ExitCode> {
    let history = match server {
        Some(url) => Backend::Remote(Client::new(url, config)?),
        None => Backend::Local(open_history(config)?),
    };
    match args.command {
        RunsCommand::List {
            job,
            states,
            limit,
            json,
        } => {
            let filter = RunFilter {
                job,
                states,
                limit,
                ..Default::default()
            };
            let (items, total) = history.list(&filter)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&run_views(&items))?);
            } else {
                print_table(&items, total);
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { id, json } => {
            let Some((run, logs, artifacts, notifications)) = history.show(id)? else {
                eprintln!("error: run {id} does not exist");
                return Ok(ExitCode::from(1));
            };
            if json {
                let shown = Shown {
                    run: wire::RunDetail {
                        run: RunView::from(&run),
                        artifacts: artifacts.iter().map(ArtifactView::from).collect(),
                        notifications: notifications.iter().map(NotificationView::from).collect(),
                    },
                    logs: logs.iter().map(LogLineView::from).collect(),
                };
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print_run(&run);
                if !artifacts.is_empty() {
                    println!("artifacts:");
                    for a in &artifacts {
                        println!("  {}  {} {}", a.name, a.store, a.path);
                        let size = a
                            .size
                            .map_or("size unknown".to_string(), |n| format!("{n} bytes"));
                        let sha = a
                            .sha256
                            .as_deref()
                            .map_or("sha256 unknown".to_string(), |s| format!("sha256 {s}"));
                        println!("      {size}, {sha}");
                    }
                }
                if !notifications.is_empty() {
                    println!("notifications:");
                    for n in &notifications {
                        print_notification(n);
                    }
                }
                println!("logs:");
                for l in &logs {
                    println!(
                        "  {} {:<5} {}",
                        format_time(&l.at),
                        l.level.as_str(),
                        l.message
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Logs {
            id,
            follow,
            after,
            json,
        } => {
            if json {
                super::follow::json_lines();
            }
            match (&history, follow) {
                (Backend::Local(h), true) => super::follow::local(&**h, id, after),
                (Backend::Remote(c), true) => super::follow::remote(c, id, after),
                (_, false) => {
                    let Some((_, logs, _, _)) = history.show(id)? else {
                        eprintln!("error: run {id} does not exist");
                        return Ok(ExitCode::from(1));
                    };
                    for l in logs.iter().filter(|l| l.seq > after) {
                        super::follow::print_line(
                            &format_time(&l.at),
                            l.level.as_str(),
                            &l.message,
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        RunsCommand::Cancel { ids, json } => {
            let mut code = ExitCode::SUCCESS;
            let mut out = Vec::new();
            for id in ids {
                match history.cancel(id) {
                    Ok(what) if json => out.push(
                        serde_json::json!({"id": id, "ok": true, "result": what.to_string()}),
                    ),
                    Ok(what) => println!("run {id}: {what}"),
                    Err(e) => {
                        if json {
                            out.push(
                                serde_json::json!({"id": id, "ok": false, "result": e.to_string()}),
                            );
                        }
                        eprintln!("error: {e}");
                        code = ExitCode::from(1);
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(code)
        }
        RunsCommand::Rerun { id, json } => {
            let (new, state) = history.rerun(config, id)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": new, "state": state, "of": id})
                );
                return Ok(ExitCode::SUCCESS);
            }
            match (&history, state.as_str()) {
                (Backend::Local(_), _) => println!(
                    "run {new} queued (run {id} again); a running `ferry serve` on this project starts it"
                ),
                _ => println!("run {new} {state} (run {id} again)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Delete { ids, json } => {
            let mut code = ExitCode::SUCCESS;
            let mut out = Vec::new();
            for id in ids {
                match history.delete(config, id) {
                    Ok(()) if json => {
                        out.push(serde_json::json!({"id": id, "ok": true, "result": "deleted"}))
                    }
                    Ok(()) => println!("run {id}: deleted"),
                    Err(e) => {
                        if json {
                            out.push(
                                serde_json::json!({"id": id, "ok": false, "result": e.to_string()}),
                            );
                        }
                        eprintln!("error: {e}");
                        code = ExitCode::from(1);
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(code)
        }
    }
}

fn duration(r: &RunRecord) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => format_duration((f - s).to_std().unwrap_or_default()),
        (Some(s), None) => format!(
            "{}…",
            format_duration((chrono::Utc::now() - s).to_std().unwrap_or_default())
        ),
        _ => "-".into(),
    }
}

fn print_table(items: &[RunRecord], total: u64) {
    println!(
        "{:>6}  {:<20} {:<11} {:<7} {:<24} {:>8}  ERROR",
        "ID", "JOB", "STATE", "TRIGGER", "QUEUED", "TOOK"
    );
    for r in items {
        let err = r.error.as_ref().map(|e| {
            let first = e.message.lines().next().unwrap_or("");
            let short: String = first.chars().take(60).collect();
            format!("{}: {short}", e.code)
        });
        println!(
            "{:>6}  {:<20} {:<11} {:<7} {:<24} {:>8}  {}",
            r.id,
            r.job,
            r.state.as_str(),
            r.trigger_kind(),
            format_time(&r.queued_at),
            duration(r),
            err.unwrap_or_default()
        );
    }
    if total as usize > items.len() {
        println!("({} of {total} runs shown; use --limit)", items.len());
    }
}

/// `  failure  webhook https://hooks.example.com/…  failed after 3 attempts: reason`.
fn print_notification(n: &crate::history::Notification) {
    use crate::history::NotificationState as S;
    let attempts = |n: u32| format!("{n} attempt{}", if n == 1 { "" } else { "s" });
    let state = match n.state {
        S::Sent => format!("sent ({})", attempts(n.attempts)),
        S::Failed => format!("failed after {}", attempts(n.attempts)),
        S::Pending => match n.next_at {
            Some(t) => format!(
                "pending ({} so far, next at {})",
                attempts(n.attempts),
                format_time(&t)
            ),
            None => format!("pending ({} so far)", attempts(n.attempts)),
        },
    };
    let reason = match (&n.state, &n.reason) {
        (S::Sent, _) | (_, None) => String::new(),
        (_, Some(r)) => format!(": {r}"),
    };
    println!(
        "  {:<9} {:<7} {}  {state}{reason}",
        n.event, n.channel, n.target
    );
}

/// `ferry runs show --json`: the run as `GET /api/v1/runs/{id}` shows it, with its logs.
#[derive(serde::Serialize)]
struct Shown {
    #[serde(flatten)]
    run: wire::RunDetail,
    logs: Vec<LogLineView>,
}

fn print_run(r: &RunRecord) {
    println!("run {}  job {}  {}", r.id, r.job, r.state);
    println!("trigger:  {}", r.trigger.to_json());
    println!("params:   {}", crate::redact::mask_params(&r.params));
    println!("queued:   {}", format_time(&r.queued_at));
    if let Some(t) = r.started_at {
        println!("started:  {}", format_time(&t));
    }
    if let Some(v) = &r.script_version {
        println!("script:   version {v}  (ferry jobs history {})", r.job);
    }
    if let Some(t) = r.finished_at {
        println!("finished: {}  (took {})", format_time(&t), duration(r));
    }
    if let Some(p) = r.progress {
        match p.total {
            Some(t) => println!("progress: {}/{t}", p.done),
            None => println!("progress: {}", p.done),
        }
    }
    if let Some(e) = &r.error {
        println!("error:    {}: {}", e.code, e.message);
        if let Some(tb) = &e.traceback {
            for l in tb.lines() {
                println!("          {l}");
            }
        }
    }
    if let Some(s) = &r.summary {
        println!("summary:  {s}");
    }
}
