//! `ferry jobs [--json]`: every job with its triggers, next run, last run and load error.

use std::process::ExitCode;

use serde_json::Value;

use super::client::Client;
use super::open_history;
use crate::config::Config;
use crate::history::{History, RunFilter};
use crate::jobs::registry::Registry;
use crate::jobs::view::JobView;

/// Lists the jobs: as a running daemon sees them (`server`), or as the scripts folder holds
/// them now.
pub fn jobs(config: &Config, server: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<Value> = match server {
        Some(url) => Client::new(url)?.jobs()?,
        None => {
            let mut registry = Registry::default();
            registry.rescan(config);
            let history = open_history(config)?;
            let mut rows = Vec::new();
            for (name, entry) in registry.entries() {
                let (last, _) = history.list_runs(&RunFilter {
                    job: Some(name.clone()),
                    limit: 1,
                    ..Default::default()
                })?;
                rows.push(serde_json::to_value(JobView::new(
                    config,
                    name,
                    entry,
                    last.first(),
                    None,
                ))?);
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
