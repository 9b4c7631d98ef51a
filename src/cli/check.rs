//! `ferry check [FILES...]`: load and validate scripts without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::jobs::{self, load_job};

/// Arguments of `ferry check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scripts to check (default: every script in the scripts folder).
    pub files: Vec<PathBuf>,
    /// Print the result as JSON: `{"checked", "failed", "scripts": [{"file", "ok", "job",
    /// "problems"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// Checks every script given (or found) and reports every problem; exit 1 if any.
pub fn check(config: &Config, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let files = if args.files.is_empty() {
        jobs::discover(&config.scripts_dir)?
    } else {
        let cwd = std::env::current_dir()?;
        args.files.iter().map(|f| cwd.join(f)).collect()
    };
    if files.is_empty() && !args.json {
        println!(
            "no job scripts in {}",
            config.display_path(&config.scripts_dir)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    let mut report: Vec<serde_json::Value> = Vec::new();
    // In JSON mode the lines go to the report instead of stdout.
    let json = args.json;
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    let mut graph = std::collections::BTreeMap::new();
    for path in &files {
        match load_job(config, path) {
            Ok(spec) => {
                graph.insert(
                    spec.name.clone(),
                    (
                        spec.chunk_name.clone(),
                        spec.after.iter().map(|a| a.job.clone()).collect::<Vec<_>>(),
                    ),
                );
                let mut what = Vec::new();
                if let Some(s) = &spec.schedule {
                    what.push(format!("schedule {}", s.expr));
                }
                if let Some(w) = &spec.watch {
                    what.push(format!("watch {}/{}", w.path.display(), w.pattern));
                }
                if !spec.after.is_empty() {
                    what.push(format!(
                        "after {}",
                        spec.after
                            .iter()
                            .map(|a| a.job.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !spec.params.is_empty() {
                    what.push(format!(
                        "params {}",
                        spec.params.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                let detail = if what.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", what.join("; "))
                };
                say(format!("ok    {}{detail}", spec.chunk_name));
                report.push(serde_json::json!({
                    "file": spec.chunk_name,
                    "ok": true,
                    "job": spec.name,
                    "triggers": what,
                    "problems": [],
                }));
            }
            Err(e) => {
                failed += 1;
                say(format!("FAIL  {}", e.file));
                for line in e.to_string().lines() {
                    say(format!("      {line}"));
                }
                report.push(serde_json::json!({
                    "file": e.file,
                    "ok": false,
                    "problems": e.to_string().lines().collect::<Vec<_>>(),
                }));
            }
        }
    }
    // Chains that would never end.
    let ups: std::collections::BTreeMap<String, Vec<String>> = graph
        .iter()
        .map(|(n, (_, ups))| (n.clone(), ups.clone()))
        .collect();
    for (name, (chunk, _)) in &graph {
        if let Some(cycle) = jobs::chain::cycle_through(&ups, name) {
            failed += 1;
            let problem = format!(
                "after: the jobs' `after` form a cycle: {}; a chain must end",
                cycle.join(" → ")
            );
            say(format!("FAIL  {chunk}"));
            say(format!("      {problem}"));
            for entry in report.iter_mut().filter(|e| e["file"] == chunk.as_str()) {
                entry["ok"] = false.into();
                if let Some(list) = entry["problems"].as_array_mut() {
                    list.push(problem.clone().into());
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checked": files.len(),
                "failed": failed,
                "scripts": report,
            }))?
        );
    } else {
        println!("{} checked, {} failed", files.len(), failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
