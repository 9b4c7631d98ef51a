//! `ferry trigger JOB [-p k=v]... [--at TIME]`: queue a run for the daemon.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value};

use super::client::Client;
use super::open_history;
use super::run::{load_with_params, parse_pairs, script_path};
use crate::config::Config;
use crate::history::NewRun;
use crate::history::Trigger;

/// Arguments of `ferry trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The job name.
    pub job: String,
    /// A parameter, converted by its declared type. Repeatable.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Start the run at this time (RFC 3339, e.g. 2026-01-31T02:30:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Wait for the run: print its log lines as they come and exit with its outcome (0 when it
    /// succeeded, 1 otherwise).
    #[arg(long)]
    pub wait: bool,
    /// Print the queued run as JSON (`{"id", "state"}`); not with --wait.
    #[arg(long, conflicts_with = "wait")]
    pub json: bool,
}

/// Queues the run and prints its id.
pub fn trigger(
    config: &Config,
    server: Option<&str>,
    args: TriggerArgs,
) -> anyhow::Result<ExitCode> {
    let Some(pairs) = parse_pairs(&args.params) else {
        return Ok(ExitCode::from(2));
    };
    let at = match &args.at {
        None => None,
        Some(t) => match crate::units::parse_instant(t) {
            Ok(t) => Some(t),
            Err(m) => {
                eprintln!("error: --at: {m}");
                return Ok(ExitCode::from(2));
            }
        },
    };
    if let Some(url) = server {
        // The daemon converts text values by the declared types.
        let params: Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let client = Client::new(url, config)?;
        let (id, state) = client.trigger(&args.job, Value::Object(params), args.at.clone())?;
        if args.json {
            println!("{}", serde_json::json!({ "id": id, "state": state }));
            return Ok(ExitCode::SUCCESS);
        }
        if !args.wait {
            println!("run {id} {state}");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("run {id} {state}");
        return match state.as_str() {
            "queued" => super::follow::remote(&client, id, 0),
            // Skipped by the job's overlap policy: it did not run.
            _ => Ok(ExitCode::from(1)),
        };
    }
    if args.wait && !super::follow::daemon_serves(config)? {
        eprintln!(
            "error: no `ferry serve` runs for this project, so nothing would start the run; run it here with `ferry run {}`",
            args.job
        );
        return Ok(ExitCode::from(2));
    }
    let path = script_path(config, &args.job);
    let Some((spec, resolved)) = load_with_params(config, &path, pairs) else {
        return Ok(ExitCode::from(2));
    };
    let history = open_history(config)?;
    let trigger = Trigger::Api;
    let id = history.create_run(&NewRun {
        job: spec.name.clone(),
        trigger: trigger.clone(),
        params: Value::Object(
            crate::jobs::seal::Sealer::for_config(config)?.seal_params(resolved, &spec.params),
        ),
        attempt: 1,
        not_before: at,
        retry_of: None,
        owner: None,
    })?;
    if args.wait {
        eprintln!("run {id} queued");
        return super::follow::local(&*history, id, 0);
    }
    if args.json {
        println!("{}", serde_json::json!({ "id": id, "state": "queued" }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("run {id} queued; a running `ferry serve` on this project starts it");
    Ok(ExitCode::SUCCESS)
}
