//! Test harness: a project in a temp dir and the real `ferry` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A ferry project in a temporary directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

/// The result of a ferry invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.all()))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

impl Project {
    pub fn new() -> Project {
        let p = Project {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir_all(p.path().join("scripts")).unwrap();
        std::fs::create_dir_all(p.path().join("plugins")).unwrap();
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("scripts/{name}.lua"), text)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(self.path())
            .env_remove("FERRY_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("FERRY_SECRET_") {
                c.env_remove(k);
            }
        }
        c
    }

    pub fn ferry(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("run ferry").into()
    }

    pub fn ferry_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run ferry").into()
    }

    /// `ferry runs show ID --json`.
    pub fn show(&self, id: i64) -> serde_json::Value {
        self.ferry(&["runs", "show", &id.to_string(), "--json"])
            .json()
    }

    /// The newest run of a job as JSON, if any.
    pub fn last_run(&self, job: &str) -> Option<serde_json::Value> {
        let r = self.ferry(&["runs", "list", "--job", job, "--limit", "1", "--json"]);
        r.json().as_array().and_then(|a| a.first().cloned())
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > until {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
