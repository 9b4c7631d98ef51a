//! Test harness: a project in a temp dir and the real `ferry` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A ferry project in a temporary directory.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// Environment variables set on every `ferry` started from here (see [`Project::set_env`]).
    env: Vec<(String, String)>,
}

/// The result of a ferry invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr, joined by a newline.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout parsed as JSON; panics with the output if it is not.
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

/// What `ferry run --json FILE` produced (see [`Project::run_file`]).
pub struct RunResult {
    /// The process output (stdout: the run as JSON; stderr: the live log).
    pub output: Output,
    /// The finished run as JSON (id, state, error, summary, artifacts).
    pub record: serde_json::Value,
}

impl RunResult {
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

/// Path of the `ferry` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

impl Project {
    /// An empty project with `scripts/` and `plugins/` folders and no `ferry.toml`.
    pub fn new() -> Project {
        let p = Project {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        };
        std::fs::create_dir_all(p.path().join("scripts")).unwrap();
        std::fs::create_dir_all(p.path().join("plugins")).unwrap();
        p
    }

    /// A project (as [`Project::new`]) with this `ferry.toml` and `data/` and `inbox/` folders.
    pub fn with_config(config: &str) -> Project {
        let p = Project::new();
        p.write("ferry.toml", config);
        std::fs::create_dir_all(p.at("data")).expect("data folder");
        std::fs::create_dir_all(p.at("inbox")).expect("inbox folder");
        p
    }

    /// A project holding copies of the shipped `plugins/` and `scripts/`.
    pub fn with_shipped_files() -> Project {
        let p = Project::new();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["plugins", "scripts"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "lua") {
                    std::fs::copy(&path, p.path().join(dir).join(path.file_name().unwrap()))
                        .unwrap();
                }
            }
        }
        p
    }

    /// The project root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path under the project root.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Sets an environment variable for every `ferry` started from here (`cmd`, `ferry`, ...).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Writes a file under the root (creating its folders) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes the job `scripts/NAME.lua` and returns its path.
    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        self.write(&format!("scripts/{name}.lua"), text)
    }

    /// Writes `NAME.lua` at the project root and returns its file name, for `run_file`.
    pub fn root_script(&self, name: &str, source: &str) -> String {
        let file = format!("{name}.lua");
        self.write(&file, source);
        file
    }

    /// A `ferry ARGS` command in the project folder, without the caller's `FERRY_LOG` and
    /// `FERRY_SECRET_*`, with the variables of `set_env`.
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
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `ferry ARGS` to the end.
    pub fn ferry(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("run ferry").into()
    }

    /// Runs `ferry ARGS` to the end with these extra environment variables.
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

    /// `ferry runs show ID --json` as text: everything the history holds about a run.
    pub fn history(&self, id: i64) -> String {
        let r = self.ferry(&["runs", "show", &id.to_string(), "--json"]);
        assert_eq!(r.code, 0, "ferry runs show failed:\n{}", r.all());
        r.stdout
    }

    /// The newest run of a job as JSON, if any.
    pub fn last_run(&self, job: &str) -> Option<serde_json::Value> {
        let r = self.ferry(&["runs", "list", "--job", job, "--limit", "1", "--json"]);
        r.json().as_array().and_then(|a| a.first().cloned())
    }

    /// Starts `ferry run --json FILE` with piped stdout and stderr, without waiting.
    pub fn spawn_file(&self, file: &str) -> Child {
        self.cmd(&["run", "--json", file])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferry")
    }

    /// Runs a script file with `ferry run --json FILE` and parses the run record.
    pub fn run_file(&self, file: &str) -> RunResult {
        let output = self.spawn_file(file).wait_with_output().expect("run ferry");
        Self::parse_run(output)
    }

    /// Parses the output of `ferry run --json`; panics if stdout holds no run record.
    pub fn parse_run(output: Output) -> RunResult {
        let record = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "ferry run did not print a run record ({e}):\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        RunResult { output, record }
    }

    /// Every run as JSON, oldest first.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let r = self.ferry(&["runs", "list", "--limit", "0", "--json"]);
        let mut v = r.json().as_array().cloned().unwrap_or_default();
        v.reverse();
        v
    }

    /// Runs of a job, oldest first.
    pub fn runs_of(&self, job: &str) -> Vec<serde_json::Value> {
        self.runs()
            .into_iter()
            .filter(|r| r["job"] == job)
            .collect()
    }

    /// Names of the entries (files and folders) directly in a folder, sorted; empty if absent.
    pub fn files_in(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path().join(rel))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every file below a folder (recursive), relative to it, sorted; empty if absent.
    pub fn files(&self, rel: &str) -> Vec<String> {
        let base = self.at(rel);
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

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill only sends a signal.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// SIGTERM.
pub const SIGTERM: i32 = 15;
/// SIGKILL.
pub const SIGKILL: i32 = 9;
/// SIGINT.
pub const SIGINT: i32 = 2;

/// A `ferry serve` process; killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
    /// Base URL of the API, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

impl Daemon {
    /// Starts `ferry serve` on a free loopback port and waits until the API listens.
    pub fn start(p: &Project) -> Daemon {
        Self::start_with(p, &[])
    }

    /// As [`Daemon::start`], with extra `ferry serve` arguments.
    pub fn start_with(p: &Project, args: &[&str]) -> Daemon {
        let n = std::fs::read_dir(p.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("serve-"))
            })
            .count();
        let log = p.path().join(format!("serve-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let child = p
            .cmd(&all)
            .env("FERRY_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ferry serve");
        let mut d = Daemon {
            child,
            log,
            url: String::new(),
        };
        d.url = wait_for("the daemon to serve", Duration::from_secs(30), || {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("ferry serve exited ({status}):\n{}", d.log());
            }
            let log = d.log();
            let at = log.find("API listening on ")?;
            let rest = &log[at + "API listening on ".len()..];
            Some(rest.lines().next()?.trim().to_string())
        });
        d
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        signal(self.child.id(), SIGTERM);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > until {
                panic!("daemon did not stop; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        signal(self.child.id(), SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Helpers of the store and format tests.

pub mod api;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering};

/// A short token unique within this machine's test runs: for bucket names and credentials.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
}

/// Deterministic pseudo-random bytes (xorshift), so big objects can be checked without keeping
/// a copy: `fill(seed, offset, buf)` gives the bytes at `offset` of the stream for `seed`.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let mut x = (offset + i as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
}
