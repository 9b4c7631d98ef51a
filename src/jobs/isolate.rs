//! Evaluating a job script's top level in a process of its own (`ferry eval-spec`), so that no
//! script can hang or crash whoever loads it: `ferry check`, `ferry run` and the daemon's
//! reload.
//!
//! The instruction hook bounds a runaway in Lua code, but not one in a C function (a
//! backtracking `string.find`) nor a `__gc` finalizer (Lua runs finalizers with hooks off, also
//! when the VM closes), and a panic or an allocation failure in Rust would take the loading
//! process with it. So the parent writes the script to a child on stdin; the child says it has
//! started, evaluates the script under the sandbox and the spec limits, closes the VM (running
//! its finalizers), prints the spec table as JSON and exits. The parent kills a child that has
//! not answered within [`SPEC_TIMEOUT`] and `[limits] kill_grace` of starting, and reports a
//! child that died (a panic, the address-space limit) as a load error of that script alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{SPEC_TIMEOUT, vm_options};
use crate::config::Config;
use crate::lua::{self, ErrorCode, ScriptError, SpecTable};
use crate::units::format_duration;

/// How long a child may take to start before it is given up on (a loaded machine).
const START_LIMIT: Duration = Duration::from_secs(30);
/// How many lines of a dead child's stderr are kept for the message.
const STDERR_LINES: usize = 5;

/// Errors of the child side.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    /// The request could not be read or the answer not written.
    #[error("eval-spec: {0}")]
    Io(#[from] std::io::Error),
    /// The request was not valid JSON.
    #[error("eval-spec: invalid request: {0}")]
    Request(#[from] serde_json::Error),
    /// The address-space limit could not be set.
    #[error("eval-spec: {0}")]
    Limit(String),
}

/// What the parent sends.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    chunk_name: String,
    source: String,
}

/// What the child prints, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply {
    /// The child runs and starts evaluating.
    Started,
    /// The table the script returned.
    Spec {
        fields: Map<String, Value>,
        run_type: Option<String>,
    },
    /// The script failed to evaluate.
    Failed {
        message: String,
        traceback: Option<String>,
    },
}

/// Evaluates a script's top level in a child process; see the module documentation. Every
/// failure, including a hang or a crash of the child, is a [`ScriptError`] with code `load`.
pub fn evaluate(config: &Config, chunk_name: &str, source: &str) -> Result<SpecTable, ScriptError> {
    let fail = |message: String| ScriptError {
        code: ErrorCode::Load,
        message: format!("{chunk_name}: {message}"),
        traceback: None,
    };
    let exe = std::env::current_exe().map_err(|e| {
        fail(format!(
            "cannot find the ferry binary to evaluate the script: {e}"
        ))
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("eval-spec");
    if let Some(file) = &config.file {
        cmd.arg("--config").arg(file);
    }
    // The child finds the same project whatever FERRY_ROOT or FERRY_CONFIG say.
    cmd.arg("--root").arg(&config.root);
    cmd.env_remove("FERRY_ROOT").env_remove("FERRY_CONFIG");
    // A crash is reported with the child's last words; a backtrace would drown them.
    cmd.current_dir(&config.root)
        .env_remove("FERRY_LOG")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Ctrl-C goes to the loading process only; a child that outlives it ends by its alarm
    // (see `run_child`).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| {
        fail(format!(
            "cannot start a process to evaluate the script: {e}"
        ))
    })?;

    let request = serde_json::to_string(&Request {
        chunk_name: chunk_name.to_owned(),
        source: source.to_owned(),
    })
    .map_err(|e| fail(format!("cannot encode the script: {e}")))?;
    // Written from a thread: a large script must not block on a child that does not read.
    let stdin = child.stdin.take();
    std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = writeln!(stdin, "{request}");
        }
    });
    let (tx, rx) = mpsc::channel::<Reply>();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(reply) = serde_json::from_str::<Reply>(&line)
                    && tx.send(reply).is_err()
                {
                    break;
                }
            }
        });
    }
    let mut stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        })
    });

    let grace = config.limits.kill_grace;
    let mut deadline = Instant::now() + START_LIMIT;
    let mut limit_text = format!("did not start within {}", format_duration(START_LIMIT));
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Reply::Started) => {
                deadline = Instant::now() + SPEC_TIMEOUT + grace;
                limit_text = format!(
                    "did not finish evaluating within {} (and {} of grace): a loop at its top level, in a C function or in a __gc finalizer? It was stopped",
                    format_duration(SPEC_TIMEOUT),
                    format_duration(grace)
                );
            }
            Ok(Reply::Spec { fields, run_type }) => break Ok(SpecTable { fields, run_type }),
            Ok(Reply::Failed { message, traceback }) => {
                break Err(ScriptError {
                    code: ErrorCode::Load,
                    message,
                    traceback,
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                break Err(fail(limit_text));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed without an answer: the child died.
                let status = child.wait();
                let text = stderr
                    .take()
                    .and_then(|h| h.join().ok())
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(STDERR_LINES).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("status unknown: {e}"),
                };
                let mut message =
                    format!("evaluating the script crashed the process that ran it ({how})");
                if !tail.is_empty() {
                    message.push_str(": ");
                    message.push_str(&tail.join(" | "));
                }
                break Err(fail(message));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// The child: reads one request on stdin, evaluates it and prints the answer (`ferry
/// eval-spec`).
pub fn run_child(config: &Config) -> Result<(), IsolateError> {
    // The parent kills a child that overruns; should the parent itself die first, the alarm
    // (whose default action ends the process) still bounds how long a runaway in a C function
    // can outlive it.
    let lifetime = SPEC_TIMEOUT + config.limits.kill_grace + Duration::from_secs(2);
    // SAFETY: alarm only arms a timer of this process.
    unsafe {
        libc::alarm(u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX));
    }
    let vm = vm_options(config, None, SPEC_TIMEOUT);
    // Memory Rust holds for the script (outside Lua's allocator) is bounded as in a worker.
    super::worker::limit_address_space(vm.memory.saturating_add(config.limits.worker_headroom))
        .map_err(|e| IsolateError::Limit(e.to_string()))?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let req: Request = serde_json::from_str(&line)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&Reply::Started)?)?;
    out.flush()?;
    // The VM is closed (its finalizers run) inside `evaluate_spec`, before the answer.
    let reply = match lua::evaluate_spec(&req.chunk_name, &req.source, &vm) {
        Ok(t) => Reply::Spec {
            fields: t.fields,
            run_type: t.run_type,
        },
        Err(e) => Reply::Failed {
            message: e.message,
            traceback: e.traceback,
        },
    };
    writeln!(out, "{}", serde_json::to_string(&reply)?)?;
    out.flush()?;
    Ok(())
}
