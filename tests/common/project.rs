//! A temp project with a `ferry.toml`, driven through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A project folder with `data/` and `inbox/`.
pub struct Project {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What `ferry run --json` produced.
pub struct Run {
    /// The process output (stdout: the run as JSON; stderr: the live log).
    pub output: Output,
    /// The finished run as JSON (id, state, error, summary, artifacts).
    pub record: serde_json::Value,
}

impl Run {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.record["state"] == "succeeded"
    }

    /// The error message, or "".
    pub fn error(&self) -> String {
        self.record["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// stdout and stderr as text.
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
}

impl Project {
    /// A project with this `ferry.toml`.
    pub fn new(config: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp project");
        std::fs::write(dir.path().join("ferry.toml"), config).expect("write ferry.toml");
        std::fs::create_dir_all(dir.path().join("data")).expect("data folder");
        std::fs::create_dir_all(dir.path().join("inbox")).expect("inbox folder");
        Project {
            dir,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every `ferry` started from here.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a script file and returns its name.
    pub fn script(&self, name: &str, source: &str) -> String {
        let file = format!("{name}.lua");
        std::fs::write(self.path(&file), source).expect("write script");
        file
    }

    /// A `ferry` command in the project folder.
    pub fn ferry(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.current_dir(self.root());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `ferry run --json FILE` without waiting.
    pub fn spawn(&self, file: &str) -> Child {
        self.ferry()
            .arg("run")
            .arg("--json")
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferry")
    }

    /// Runs a script file with `ferry run --json` and parses the run record.
    pub fn run(&self, file: &str) -> Run {
        let output = self.spawn(file).wait_with_output().expect("run ferry");
        Self::parse(output)
    }

    /// Parses the output of `ferry run --json`.
    pub fn parse(output: Output) -> Run {
        let record = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "ferry run did not print a run record ({e}):\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        Run { output, record }
    }

    /// `ferry runs show ID --json`: everything the history holds about a run.
    pub fn history(&self, id: i64) -> String {
        let out = self
            .ferry()
            .args(["runs", "show", &id.to_string(), "--json"])
            .output()
            .expect("ferry runs show");
        assert!(out.status.success(), "ferry runs show failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every file below a folder (recursive), relative to it, sorted.
    pub fn files(&self, rel: &str) -> Vec<String> {
        let base = self.path(rel);
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(r) = p.strip_prefix(&base) {
                    out.push(r.display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}
