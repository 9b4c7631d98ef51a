//! `ferry jobs [--json]`: every job with its triggers, next run, last run and load error.

use std::process::ExitCode;

use serde_json::json;

use super::open_history;
use crate::config::Config;
use crate::history::{History, RunFilter, format_time};
use crate::jobs::registry::Registry;

/// Lists the jobs of the scripts folder.
pub fn jobs(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let mut registry = Registry::default();
    registry.rescan(config);
    let history = open_history(config)?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for (name, entry) in registry.entries() {
        let (last, _) = history.list_runs(&RunFilter {
            job: Some(name.clone()),
            limit: 1,
            ..Default::default()
        })?;
        let last = last.first();
        let spec = entry.spec.as_deref();
        rows.push(json!({
            "name": name,
            "file": config.display_path(&entry.path),
            "loaded": spec.is_some(),
            "error": entry.error.as_ref().map(|e| e.to_string()),
            "description": spec.and_then(|s| s.description.clone()),
            "schedule": spec.and_then(|s| s.schedule.as_ref()).map(|s| json!({
                "cron": s.expr, "timezone": s.timezone.name(), "missed": s.missed,
            })),
            "next_run": spec.and_then(|s| s.schedule.as_ref()).and_then(|s| s.next_after(now)).map(|t| format_time(&t)),
            "watch": spec.and_then(|s| s.watch.as_ref()),
            "params": spec.map(|s| &s.params),
            "overlap": spec.map(|s| s.overlap),
            "retries": spec.map(|s| s.retries),
            "last_run": last.map(|r| json!({"id": r.id, "state": r.state, "queued_at": format_time(&r.queued_at)})),
        }));
    }
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
