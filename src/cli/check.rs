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
}

/// Checks every script given (or found) and reports every problem; exit 1 if any.
pub fn check(config: &Config, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let files = if args.files.is_empty() {
        jobs::discover(&config.scripts_dir)?
    } else {
        let cwd = std::env::current_dir()?;
        args.files.iter().map(|f| cwd.join(f)).collect()
    };
    if files.is_empty() {
        println!(
            "no job scripts in {}",
            config.display_path(&config.scripts_dir)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
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
                println!("ok    {}{detail}", spec.chunk_name);
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {}", e.file);
                for line in e.to_string().lines() {
                    println!("      {line}");
                }
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
            println!("FAIL  {chunk}");
            println!(
                "      after: the jobs' `after` form a cycle: {}; a chain must end",
                cycle.join(" → ")
            );
        }
    }
    println!("{} checked, {} failed", files.len(), failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
