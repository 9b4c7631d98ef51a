//! `ferry run JOB|FILE.lua [-p key=value]...`: run a job now, through a worker process, recorded
//! in the history, with live logs and a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::open_history;
use crate::config::Config;
use crate::history::{RunRecord, RunState};
use crate::jobs::executor::{self, ExecError};
use crate::jobs::params::{self, GivenParams};
use crate::jobs::protocol::Event;
use crate::jobs::{Trigger, load_job};
use crate::units::format_duration;

/// Arguments of `ferry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A job name (scripts/NAME.lua) or a path to a .lua file.
    pub job: String,
    /// A parameter, converted by its declared type. Repeatable.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Print the finished run as JSON on stdout (logs go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Where the script of `JOB|FILE` is.
pub fn script_path(config: &Config, job: &str) -> PathBuf {
    if job.ends_with(".lua") || job.contains('/') {
        std::env::current_dir()
            .map(|d| d.join(job))
            .unwrap_or_else(|_| PathBuf::from(job))
    } else {
        config.scripts_dir.join(format!("{job}.lua"))
    }
}

/// Runs the job and returns 0 on success, 1 when the run did not succeed, 2 when it could not start.
pub fn run(config: &Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    let path = script_path(config, &args.job);
    if !path.is_file() {
        eprintln!(
            "error: no job {:?}: {} does not exist",
            args.job,
            config.display_path(&path)
        );
        return Ok(ExitCode::from(2));
    }
    let Some(pairs) = parse_pairs(&args.params) else {
        return Ok(ExitCode::from(2));
    };
    let Some((spec, resolved)) = load_with_params(config, &path, pairs) else {
        return Ok(ExitCode::from(2));
    };
    let history = open_history(config)?;
    let sealer = crate::jobs::seal::Sealer::for_config(config)?;
    let prepared = executor::enqueue(
        config,
        &*history,
        &sealer,
        &spec,
        resolved,
        &Trigger::Manual,
        1,
    )?;
    let id = prepared.request.run_id;

    let cancel = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, cancel.clone())
        .context("cannot handle Ctrl-C")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, cancel.clone())
        .context("cannot handle SIGTERM")?;

    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos}/{len} [{bar:30}] {percent}% {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let json = args.json;
    let mut on_event = |ev: &Event| match ev {
        Event::Log { level, message, .. } => {
            let line = format!(
                "{} {:<5} {message}",
                chrono::Local::now().format("%H:%M:%S"),
                level.as_str()
            );
            match (&bar, json) {
                (_, true) => eprintln!("{line}"),
                (Some(b), _) if !b.is_hidden() => b.println(line),
                _ => println!("{line}"),
            }
        }
        Event::Progress { done, total, .. } => {
            if let Some(b) = &bar {
                if b.is_hidden() {
                    b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                b.set_length(total.unwrap_or(0));
                b.set_position(*done);
            }
        }
        _ => {}
    };
    let cancel = executor::Cancel::from_flag(cancel);
    let result = executor::execute(config, &*history, &prepared, None, &cancel, &mut on_event);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let record = match result {
        Ok(r) => r,
        Err(ExecError::History(e)) => return Err(e.into()),
        Err(e) => {
            eprintln!("error: run {id}: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    report(&record, args.json)?;
    Ok(if record.state == RunState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(r: &RunRecord, json: bool) -> anyhow::Result<()> {
    if json {
        let shown = crate::api::wire::RunView::from(r);
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    let took = match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => format!(
            " in {}",
            format_duration((f - s).to_std().unwrap_or_default())
        ),
        _ => String::new(),
    };
    if r.state == RunState::Succeeded {
        println!("run {} succeeded{took}", r.id);
        if let Some(s) = &r.summary {
            println!("{}", serde_json::to_string_pretty(s)?);
        }
    } else {
        let err = r.error.as_ref();
        eprintln!(
            "run {} {}{took} ({}): {}",
            r.id,
            r.state,
            err.map(|e| e.code.as_str()).unwrap_or("?"),
            err.map(|e| e.message.as_str())
                .unwrap_or("no error recorded")
        );
        if let Some(tb) = err.and_then(|e| e.traceback.as_deref()) {
            eprintln!("{}", indent(tb));
        }
    }
    Ok(())
}

/// Parses `-p key=value` arguments; prints what is wrong and returns `None` on a bad one.
pub fn parse_pairs(args: &[String]) -> Option<Vec<(String, String)>> {
    match args.iter().map(|p| params::parse_pair(p)).collect() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Loads a job script and converts `-p` params by its declarations; prints what is wrong and
/// returns `None` when either fails.
pub fn load_with_params(
    config: &Config,
    path: &std::path::Path,
    pairs: Vec<(String, String)>,
) -> Option<(
    crate::jobs::JobSpec,
    serde_json::Map<String, serde_json::Value>,
)> {
    let spec = match load_job(config, path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(tb) = &e.traceback {
                eprintln!("{}", indent(tb));
            }
            return None;
        }
    };
    match params::resolve(&spec.params, &GivenParams::Text(pairs)) {
        Ok(p) => Some((spec, p)),
        Err(e) => {
            eprintln!("error: {}: {e}", spec.name);
            None
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
