//! Following one run's log lines until it ends (`ferry runs logs ID -f`, `ferry trigger
//! --wait`): from the local history, polled, or from a daemon's event stream
//! (`GET /api/v1/runs/{id}/logs?follow=true`), reconnecting where it left off when the stream
//! breaks.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::client::Client;
use crate::config::Config;
use crate::history::{HistoryStore, LogLevel, RunState, format_time};

/// How often the local history is read while following.
const POLL: Duration = Duration::from_millis(200);
/// How often a broken event stream is reopened before giving up.
const RECONNECTS: u32 = 5;

/// Whether log lines are printed as JSON objects, one per line (`ferry runs logs --json`).
static JSON_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints the following lines as JSON objects (`{"at", "level", "message"}`), one per line.
pub fn json_lines() {
    JSON_LINES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Prints one log line as `ferry run` does (or as JSON after [`json_lines`]).
pub fn print_line(at: &str, level: &str, message: &str) {
    if JSON_LINES.load(std::sync::atomic::Ordering::Relaxed) {
        println!(
            "{}",
            serde_json::json!({ "at": at, "level": level, "message": message })
        );
    } else {
        println!("{at} {level:<5} {message}");
    }
}

/// The exit code for a run that ended in `state`: 0 when it succeeded, 1 otherwise.
pub fn exit_for(id: i64, state: RunState, error: Option<&str>) -> ExitCode {
    if state == RunState::Succeeded {
        eprintln!("run {id} succeeded");
        ExitCode::SUCCESS
    } else {
        match error {
            Some(e) => eprintln!("run {id} {state}: {e}"),
            None => eprintln!("run {id} {state}"),
        }
        ExitCode::from(1)
    }
}

/// Follows a run in the local history: prints its lines after `after` as they are written and
/// returns how it ended.
pub fn local(history: &dyn HistoryStore, id: i64, mut after: i64) -> anyhow::Result<ExitCode> {
    loop {
        // The state is read first: lines written before it closed are all read below.
        let run = history.get_run(id)?;
        loop {
            let lines = history.logs(id, after, 1000)?;
            for l in &lines {
                print_line(&format_time(&l.at), l.level.as_str(), &l.message);
                after = l.seq;
            }
            if lines.len() < 1000 {
                break;
            }
        }
        if run.state.is_closed() {
            return Ok(exit_for(
                id,
                run.state,
                run.error.as_ref().map(|e| e.message.as_str()),
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Follows a run through a daemon's event stream; returns how it ended.
pub fn remote(client: &Client, id: i64, mut after: i64) -> anyhow::Result<ExitCode> {
    let mut broken = 0;
    loop {
        let resp = client.follow_stream(id, after)?;
        let mut event = String::new();
        let mut data = String::new();
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                data.clear();
                match event.as_str() {
                    "run_log" => {
                        print_line(
                            v["at"].as_str().unwrap_or(""),
                            v["level"].as_str().unwrap_or(LogLevel::Info.as_str()),
                            v["message"].as_str().unwrap_or(""),
                        );
                        after = v["seq"].as_i64().unwrap_or(after);
                    }
                    "run_finished" => {
                        let state: RunState = v["state"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(RunState::Failed);
                        return Ok(exit_for(id, state, v["error"]["message"].as_str()));
                    }
                    _ => {}
                }
            }
        }
        // The stream broke before the run ended (the daemon restarted, say): reopen it from
        // the last line seen.
        broken += 1;
        if broken > RECONNECTS {
            anyhow::bail!(
                "lost the daemon's event stream for run {id} {RECONNECTS} times; `ferry runs logs {id} -f` resumes"
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether a daemon serves this project (it holds the project lock).
pub fn daemon_serves(config: &Config) -> anyhow::Result<bool> {
    match crate::daemon::lock::ProjectLock::acquire(config) {
        Ok(_lock) => Ok(false),
        Err(crate::daemon::lock::LockError::Held { .. }) => Ok(true),
        Err(e) => Err(e).context("cannot tell whether ferry serve is running"),
    }
}
