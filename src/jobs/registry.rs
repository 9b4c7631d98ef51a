//! The set of jobs loaded from `scripts/`, reloaded when files change.
//!
//! A script that fails to load keeps the previous good version active (and reports the error);
//! a removed script removes the job. Runs already going are unaffected: they execute the source
//! they were started with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::spec::{JobSpec, LoadError, job_name, load_job};
use crate::config::Config;

/// One job as the registry knows it.
#[derive(Debug, Clone)]
pub struct JobEntry {
    /// The script file.
    pub path: PathBuf,
    /// The active version, if any version ever loaded.
    pub spec: Option<Arc<JobSpec>>,
    /// The error of the newest version, when it did not load.
    pub error: Option<LoadError>,
    /// When the active version was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
    /// The text last read from the file (loaded or not), to notice changes.
    last_text: String,
}

/// What a rescan changed, for the daemon's log.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new job loaded.
    Added(String),
    /// A job's script changed and loaded.
    Updated(String),
    /// A job's script changed but does not load; the previous version stays active (if any).
    Broken(String, String),
    /// The script was removed.
    Removed(String),
}

/// Jobs by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    jobs: BTreeMap<String, JobEntry>,
}

impl Registry {
    /// The active spec of a job.
    pub fn get(&self, name: &str) -> Option<Arc<JobSpec>> {
        self.jobs.get(name).and_then(|e| e.spec.clone())
    }

    /// Every job, loaded or not, by name.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &JobEntry)> {
        self.jobs.iter()
    }

    /// The active specs.
    pub fn specs(&self) -> Vec<Arc<JobSpec>> {
        self.jobs.values().filter_map(|e| e.spec.clone()).collect()
    }

    /// Adds or replaces a loaded job (unit tests: jobs without script files).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, spec: JobSpec) {
        let name = spec.name.clone();
        let entry = JobEntry {
            path: spec.path.clone(),
            spec: Some(Arc::new(spec)),
            error: None,
            loaded_at: None,
            last_text: String::new(),
        };
        self.jobs.insert(name, entry);
    }

    /// Reads the scripts folder and reloads what changed. Blocking (evaluates Lua). The
    /// changed scripts load side by side, each in a process of its own ([`super::isolate`]),
    /// so a script that loops until it is stopped delays the others by no more than that.
    pub fn rescan(&mut self, config: &Config) -> Vec<Change> {
        let mut changes = Vec::new();
        let paths = super::discover(&config.scripts_dir).unwrap_or_else(|e| {
            tracing::warn!("cannot read {}: {e}", config.scripts_dir.display());
            Vec::new()
        });
        let mut seen = Vec::new();
        let mut changed = Vec::new();
        for path in paths {
            let Ok(name) = job_name(&path) else { continue };
            seen.push(name.clone());
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if self
                .jobs
                .get(&name)
                .is_some_and(|e| e.last_text == text && e.path == path)
            {
                continue;
            }
            changed.push((name, path, text));
        }
        let loaded = load_all(config, &changed);
        for ((name, path, text), result) in changed.into_iter().zip(loaded) {
            let result = result.and_then(|spec| self.refuse_cycle(config, spec));
            let existed = self.jobs.get(&name).is_some_and(|e| e.spec.is_some());
            let entry = self.jobs.entry(name.clone()).or_insert_with(|| JobEntry {
                path: path.clone(),
                spec: None,
                error: None,
                loaded_at: None,
                last_text: String::new(),
            });
            entry.last_text = text;
            entry.path = path;
            match result {
                Ok(spec) => {
                    entry.spec = Some(Arc::new(spec));
                    entry.error = None;
                    entry.loaded_at = Some(Utc::now());
                    changes.push(if existed {
                        Change::Updated(name)
                    } else {
                        Change::Added(name)
                    });
                }
                Err(e) => {
                    changes.push(Change::Broken(name, e.to_string()));
                    entry.error = Some(e);
                }
            }
        }
        let gone: Vec<String> = self
            .jobs
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for name in gone {
            self.jobs.remove(&name);
            changes.push(Change::Removed(name));
        }
        changes
    }
}

impl Registry {
    /// `spec` as it would join the others, or a load error naming the jobs of the cycle its
    /// `after` would close (the previous version, if any, stays active).
    pub fn refuse_cycle(&self, config: &Config, spec: JobSpec) -> Result<JobSpec, LoadError> {
        if spec.after.is_empty() {
            return Ok(spec);
        }
        let mut graph: std::collections::BTreeMap<String, Vec<String>> = self
            .jobs
            .iter()
            .filter_map(|(n, e)| e.spec.as_ref().map(|s| (n.clone(), ups(s))))
            .collect();
        graph.insert(spec.name.clone(), ups(&spec));
        match super::chain::cycle_through(&graph, &spec.name) {
            None => Ok(spec),
            Some(cycle) => Err(LoadError {
                file: config.display_path(&spec.path),
                problems: vec![super::spec::SpecProblem {
                    key: Some("after".into()),
                    message: format!(
                        "the jobs' `after` would form a cycle: {}; a chain must end",
                        cycle.join(" → ")
                    ),
                    line: super::locate::key_line(&spec.source, "after"),
                }],
                traceback: None,
            }),
        }
    }
}

fn ups(s: &JobSpec) -> Vec<String> {
    s.after.iter().map(|a| a.job.clone()).collect()
}

/// How many scripts load at once.
const PARALLEL_LOADS: usize = 8;

/// Loads the scripts, several at a time; the results are in the order of `scripts`.
fn load_all(
    config: &Config,
    scripts: &[(String, PathBuf, String)],
) -> Vec<Result<JobSpec, LoadError>> {
    let mut out = Vec::with_capacity(scripts.len());
    for chunk in scripts.chunks(PARALLEL_LOADS) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(_, path, _)| scope.spawn(move || load_job(config, path)))
                .collect();
            for (handle, (_, path, _)) in handles.into_iter().zip(chunk) {
                out.push(handle.join().unwrap_or_else(|_| {
                    Err(LoadError {
                        file: config.display_path(path),
                        problems: vec![super::spec::SpecProblem {
                            key: None,
                            message: "internal error while loading the script (a bug in ferry)"
                                .into(),
                            line: None,
                        }],
                        traceback: None,
                    })
                }));
            }
        });
    }
    out
}
