//! The Lua host: VM setup, sandbox, limits, the `require` loader, the job context and the
//! bindings of the primitives (one file per primitive).
//!
//! Only this module imports mlua. It knows nothing of the daemon or the history: a run reports
//! logs, progress, artifacts and state through the [`RunHost`] trait that its caller implements.
//!
//! Cross-cutting pieces: `schema.rs` checks options (of host functions and, through
//! `ferry.schema`, of plugins and scripts) against shared vocabularies; `host_error.rs` turns
//! errors of host functions into Lua values with a stable `kind`; `artifacts.rs` keeps each
//! recorded artifact as the run's own copy.

mod artifacts;
mod bytes;
mod context;
mod convert;
mod errors;
mod formats;
mod host_error;
mod http;
mod json;
mod limits;
mod mysql;
mod options;
mod pipe;
mod postgres;
mod redis;
mod row_batch;
mod rows;
mod sandbox;
mod schema;
mod sql_handle;
mod sqlite;
mod store;
pub mod streams;
#[cfg(test)]
mod surface_tests;
mod time;
mod util;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mlua::{Function, Lua, Table, Value};

pub use convert::{json_to_lua, lua_to_json};
pub use errors::ErrorCode;
pub use limits::Guard;

/// Severity of a message a script logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `ctx.log.info` and `print`.
    Info,
    /// `ctx.log.warn`.
    Warn,
    /// `ctx.log.error`.
    Error,
}

/// What a running script can ask of whoever runs it. Implemented by the worker on top of the
/// history; tests implement it in memory.
pub trait RunHost {
    /// A log line (already formatted).
    fn log(&self, level: Level, message: &str);
    /// Progress: `done` of `total` units.
    fn progress(&self, done: u64, total: Option<u64>);
    /// Records an artifact: a file in a store that the run produced, with the run's own copy.
    fn artifact(&self, artifact: &ArtifactRecord) -> Result<(), String>;
    /// Reads a value the job saved in an earlier run.
    fn state_get(&self, key: &str) -> Result<Option<serde_json::Value>, String>;
    /// Saves (or with `None` removes) a value for later runs of the job.
    fn state_set(&self, key: &str, value: Option<&serde_json::Value>) -> Result<(), String>;
    /// A secret's value, or `None` when it is not defined.
    fn secret(&self, name: &str) -> Option<String>;
    /// A value to hide from logs, errors and summaries from now on: a credential a script gave
    /// inline (to `ferry.store`, say). Hosts that redact nothing may ignore it.
    fn hide(&self, _value: &str) {}
    /// Records that everything under `prefix` in `store` is to be deleted should the run not
    /// succeed (`ctx.discard_on_failure`); recorded before the script writes there, so that
    /// whoever closes the run can do it even if the run's process dies.
    fn discard_on_failure(
        &self,
        _store: &crate::storage::Store,
        _prefix: &str,
    ) -> Result<(), String> {
        Err("this host does not clean up after failed runs".into())
    }
}

/// An artifact as a run records it (`ctx.artifact`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// Name, unique in the run.
    pub name: String,
    /// The store the script named, as a URL without credentials.
    pub store: String,
    /// The path inside that store.
    pub path: String,
    /// Size in bytes of what was recorded.
    pub size: Option<u64>,
    /// Hex SHA-256 of what was recorded.
    pub sha256: Option<String>,
    /// Where the run's own copy is, relative to the artifacts folder (`RUN_ID/NAME`); `None`
    /// when the VM has no artifacts folder.
    pub copy: Option<String>,
}

/// Where scripts find their modules, and the limits of one VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Folder of Lua modules reachable with `require`.
    pub plugins_dir: PathBuf,
    /// Name under which `plugins_dir` appears in chunk names (`plugins`).
    pub plugins_label: String,
    /// Lua allocator limit in bytes.
    pub memory: u64,
    /// Wall-clock limit from the moment the VM is created.
    pub timeout: Duration,
    /// Allowed roots and named stores for `ferry.store` (and `ferry.sqlite.open`).
    pub storage: crate::storage::StorageConfig,
    /// Named Redis servers for `ferry.redis.connect("NAME")`: URL and options.
    pub redis: std::collections::BTreeMap<String, (String, crate::db::redis::RedisOptions)>,
    /// Named server databases (`[databases.NAME]`) for `ferry.postgres.connect("NAME")`.
    pub databases: std::collections::BTreeMap<String, crate::db::NamedDatabase>,
    /// The hosts `ferry.http` may call (`[http]` in ferry.toml).
    pub http: crate::http::HttpPolicy,
}

/// Everything needed to run one job script.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// Run id, exposed as `ctx.run_id`.
    pub run_id: i64,
    /// Job name, exposed as `ctx.job`.
    pub job: String,
    /// Chunk name used in errors, e.g. `scripts/hello.lua`.
    pub chunk_name: String,
    /// The script's source text.
    pub source: String,
    /// Converted parameters (a JSON object), exposed as `ctx.params`.
    pub params: serde_json::Value,
    /// The trigger (a JSON object with `kind`), exposed as `ctx.trigger`.
    pub trigger: serde_json::Value,
    /// VM options and limits.
    pub vm: VmOptions,
    /// Set from outside to ask the run to stop.
    pub cancel: Arc<AtomicBool>,
    /// The run's temporary folder (`ctx.temp()`), created on first use and removed by the host
    /// when the run ends; `None` where the host offers none.
    pub temp_dir: Option<PathBuf>,
}

/// An error of a script, with its stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    /// The phase or limit that failed.
    pub code: ErrorCode,
    /// What failed, with the script file and line when known.
    pub message: String,
    /// The Lua traceback, when there is one.
    pub traceback: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `run` returned; its value as JSON (null for nothing).
    Succeeded(serde_json::Value),
    /// It failed, timed out, ran out of memory or was cancelled.
    Failed(ScriptError),
}

/// The table a job script returned, with `run` taken out and everything else as JSON, for the
/// job spec validation in `jobs`.
#[derive(Debug, Clone)]
pub struct SpecTable {
    /// Every key but `run`, converted to JSON.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The Lua type of `run`, if present (`function` when valid).
    pub run_type: Option<String>,
}

/// Evaluates a job script to the table it returns, without running the job. Runs under the
/// same sandbox and limits as a run.
pub fn evaluate_spec(
    chunk_name: &str,
    source: &str,
    vm: &VmOptions,
) -> Result<SpecTable, ScriptError> {
    let guard = Guard::new(vm.timeout, vm.memory, Arc::new(AtomicBool::new(false)));
    let lua = sandbox::new_vm(vm, &guard, None)
        .map_err(|e| errors::classify(&e, &guard, ErrorCode::Load))?;
    let spec = load_spec(&lua, chunk_name, source)
        .map_err(|e| errors::classify(&e, &guard, ErrorCode::Load))?;
    let mut fields = serde_json::Map::new();
    let mut run_type = None;
    for pair in spec.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| errors::classify(&e, &guard, ErrorCode::Load))?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(ScriptError {
                    code: ErrorCode::Load,
                    message: format!(
                        "{chunk_name}: the returned table has a {} key; job spec keys are names like `run` or `schedule`",
                        other.type_name()
                    ),
                    traceback: None,
                });
            }
        };
        if key == "run" {
            run_type = Some(v.type_name().to_string());
            continue;
        }
        let json = lua_to_json(&v).map_err(|m| ScriptError {
            code: ErrorCode::Load,
            message: format!("{chunk_name}: key `{key}`: {m}"),
            traceback: None,
        })?;
        fields.insert(key, json);
    }
    Ok(SpecTable { fields, run_type })
}

fn load_spec(lua: &Lua, chunk_name: &str, source: &str) -> mlua::Result<Table> {
    let chunk = sandbox::load_text(lua, source, chunk_name)?;
    match chunk.call::<Value>(())? {
        Value::Table(t) => Ok(t),
        other => Err(mlua::Error::runtime(format!(
            "{chunk_name}: a job script must return a table with a `run` function, got {}",
            other.type_name()
        ))),
    }
}

/// Runs a job script: evaluates it, calls its `run` with the job context and converts what it
/// returns. Never panics on script behaviour; every failure becomes an [`Outcome::Failed`].
pub fn run_job(input: &RunInput, host: Arc<dyn RunHost>) -> Outcome {
    run_job_with(input, host, |_| {})
}

/// As [`run_job`], calling `before_close` with the outcome before the VM is closed (closing runs
/// the script's `__gc` finalizers, which may take long or never end): whoever records the run's
/// end does it there, so that a finalizer cannot change or delay how the run is recorded.
pub fn run_job_with(
    input: &RunInput,
    host: Arc<dyn RunHost>,
    before_close: impl FnOnce(&Outcome),
) -> Outcome {
    let guard = Guard::new(input.vm.timeout, input.vm.memory, input.cancel.clone());
    // Host functions run on this thread: their long loops ask this scope (see `crate::cancel`).
    let g = guard.clone();
    let _scope = crate::cancel::scope(Arc::new(move || g.termination().is_some()));
    let mut vm = None;
    let outcome = run_outcome(input, host, &guard, &mut vm);
    before_close(&outcome);
    drop(vm);
    outcome
}

fn run_outcome(
    input: &RunInput,
    host: Arc<dyn RunHost>,
    guard: &Guard,
    vm: &mut Option<Lua>,
) -> Outcome {
    match run_inner(input, host.clone(), guard, vm) {
        Ok(summary) => {
            // A limit may have been reached in the very last instructions, after `run` caught it.
            // A cancel or deadline that no instruction saw does not undo a run that completed:
            // its work is done, so it is recorded as done.
            match guard.recorded() {
                Some(t) => Outcome::Failed(guard.error_for(t)),
                None => Outcome::Succeeded(summary),
            }
        }
        Err((e, phase)) => Outcome::Failed(errors::classify(&e, guard, phase)),
    }
}

fn run_inner(
    input: &RunInput,
    host: Arc<dyn RunHost>,
    guard: &Guard,
    keep: &mut Option<Lua>,
) -> Result<serde_json::Value, (mlua::Error, ErrorCode)> {
    let load = |e| (e, ErrorCode::Load);
    let lua = sandbox::new_vm(&input.vm, guard, Some(host.clone())).map_err(load)?;
    // The caller closes the VM, after it has recorded how the run ended.
    *keep = Some(lua.clone());
    let spec = load_spec(&lua, &input.chunk_name, &input.source).map_err(load)?;
    let run: Function = match spec.get::<Value>("run").map_err(load)? {
        Value::Function(f) => f,
        other => {
            return Err(load(mlua::Error::runtime(format!(
                "{}: key `run`: expected a function, got {}",
                input.chunk_name,
                other.type_name()
            ))));
        }
    };
    let ctx = context::build(&lua, input, host.clone(), guard).map_err(load)?;
    let result = run.call::<Value>(ctx);
    // Nothing half-written may become visible: abort every writer the script left open.
    for label in streams::discard_open_writers(&lua) {
        match &result {
            Ok(_) => host.log(
                Level::Warn,
                &format!("writer {label} was never closed; its data was discarded (call close() to keep it)"),
            ),
            Err(_) => host.log(
                Level::Info,
                &format!("discarded the unfinished write to {label} (the run failed)"),
            ),
        }
    }
    let result = result.map_err(|e| (e, ErrorCode::Run))?;
    let summary = match lua_to_json(&result) {
        Ok(v) => v,
        Err(m) => {
            host.log(
                Level::Warn,
                &format!("the value `run` returned is not JSON-serialisable ({m}); the summary keeps what could be converted"),
            );
            convert::lua_to_json_lossy(&result)
        }
    };
    Ok(with_skipped_rows(&lua, summary))
}

/// Adds the rows that readers skipped under `on_error = "continue"` to the summary, under
/// `skipped_rows`, when the summary is an object (or empty).
fn with_skipped_rows(lua: &Lua, summary: serde_json::Value) -> serde_json::Value {
    let Some(skipped) = rows::skipped_summary(lua) else {
        return summary;
    };
    match summary {
        serde_json::Value::Null => serde_json::json!({ "skipped_rows": skipped }),
        serde_json::Value::Object(mut map) => {
            map.entry("skipped_rows").or_insert(skipped);
            serde_json::Value::Object(map)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A host whose last log line arrives together with a stop request: the parent went away
    /// while the script returned.
    struct StopOnLog(Arc<AtomicBool>);

    impl RunHost for StopOnLog {
        fn log(&self, _: Level, _: &str) {
            self.0.store(true, Ordering::SeqCst);
        }
        fn progress(&self, _: u64, _: Option<u64>) {}
        fn artifact(&self, _: &ArtifactRecord) -> Result<(), String> {
            Ok(())
        }
        fn state_get(&self, _: &str) -> Result<Option<serde_json::Value>, String> {
            Ok(None)
        }
        fn state_set(&self, _: &str, _: Option<&serde_json::Value>) -> Result<(), String> {
            Ok(())
        }
        fn secret(&self, _: &str) -> Option<String> {
            None
        }
    }

    fn input(source: &str, cancel: Arc<AtomicBool>) -> RunInput {
        let dir = std::env::temp_dir();
        RunInput {
            run_id: 1,
            job: "j".into(),
            chunk_name: "@j.lua".into(),
            source: source.into(),
            params: serde_json::json!({}),
            trigger: serde_json::json!({"kind": "manual"}),
            vm: VmOptions {
                plugins_dir: dir.clone(),
                plugins_label: "plugins".into(),
                memory: 64 << 20,
                timeout: Duration::from_secs(30),
                storage: crate::storage::StorageConfig::new(dir.clone(), vec![]),
                redis: Default::default(),
                databases: Default::default(),
                http: Default::default(),
            },
            cancel,
            temp_dir: None,
        }
    }

    #[test]
    fn a_run_that_completed_stays_completed_when_a_stop_comes_late() {
        let cancel = Arc::new(AtomicBool::new(false));
        let host = Arc::new(StopOnLog(cancel.clone()));
        let src = r#"return { run = function(ctx) ctx.log.info("done") return 42 end }"#;
        match run_job(&input(src, cancel.clone()), host.clone()) {
            Outcome::Succeeded(v) => assert_eq!(v, 42),
            Outcome::Failed(e) => panic!("the work was done, yet: {e}"),
        }
        // A stop that the script sees still stops it.
        cancel.store(false, Ordering::SeqCst);
        let src = r#"return { run = function(ctx) ctx.log.info("x") for i = 1, 1e9 do end return 1 end }"#;
        match run_job(&input(src, cancel), host) {
            Outcome::Failed(e) => assert_eq!(e.code, ErrorCode::Cancelled),
            Outcome::Succeeded(v) => panic!("ran past the stop: {v}"),
        }
    }
}
