//! Job specs: the table a script in `scripts/` returns, validated.
//!
//! Every problem is reported (not only the first), each naming the file, the key and what was
//! expected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::params::{ParamSpec, ParamType};
use super::schedule::{Missed, Schedule};
use crate::config::{Config, MEMORY_RANGE, RETRY_MAX_DELAY_RANGE, TIMEOUT_RANGE};
use crate::lua::{ScriptError, VmOptions};
use crate::storage::{Confinement, ErrorKind, confine_dir};
use crate::units::{DAY, DurationRange, SizeRange};

/// What happens to a run requested while another run of the same job is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record the new run as `skipped`.
    Skip,
    /// Start it when the current one ends.
    Queue,
    /// Run both.
    Allow,
}

/// What happens to a watched file after its run succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterFile {
    /// Move it to `<watch>/.ferry/archive/`.
    Archive,
    /// Delete it.
    Delete,
}

/// A watched folder.
#[derive(Debug, Clone, Serialize)]
pub struct WatchSpec {
    /// The folder, relative to the project root unless absolute.
    pub path: PathBuf,
    /// Glob of file names to pick up.
    pub pattern: String,
    /// How long size and mtime must stay unchanged before a file is taken.
    #[serde(with = "crate::units::serde_duration")]
    pub settle: Duration,
    /// What to do with a file after a successful run.
    pub after: AfterFile,
    /// Poll the folder at this interval instead of relying on file events (network shares).
    #[serde(with = "crate::units::serde_opt_duration")]
    pub poll: Option<Duration>,
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The job name (the file name without `.lua`).
    pub name: String,
    /// The script file.
    pub path: PathBuf,
    /// The chunk name errors show, e.g. `scripts/hello.lua`.
    pub chunk_name: String,
    /// The source the spec was read from; runs execute exactly this text.
    pub source: String,
    /// For people.
    pub description: Option<String>,
    /// The cron schedule.
    pub schedule: Option<Schedule>,
    /// The watched folder.
    pub watch: Option<WatchSpec>,
    /// Declared params by name.
    pub params: BTreeMap<String, ParamSpec>,
    /// Time limit, overriding the config default.
    pub timeout: Option<Duration>,
    /// Memory limit, overriding the config default.
    pub memory: Option<u64>,
    /// How often a failed run is retried.
    pub retries: u32,
    /// Delay before the first retry (doubles each time).
    pub retry_delay: Duration,
    /// Longest delay between two attempts, overriding `[daemon] retry_max_delay`.
    pub retry_max_delay: Option<Duration>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Upstream jobs whose runs start this one when they end (`after`).
    pub after: Vec<super::chain::After>,
    /// Notification keys over the `[notify]` defaults (`notify`).
    pub notify: Option<crate::notify::JobNotify>,
}

/// One problem with a job script.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecProblem {
    /// The key at fault (`schedule`, `params.since.type`), if the problem is about one.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
    /// The line of the script where the key is written, when it is written out.
    pub line: Option<u32>,
}

/// Why a job script could not be loaded: the file and every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadError {
    /// The script as shown to people (`scripts/x.lua`).
    pub file: String,
    /// The problems; never empty.
    pub problems: Vec<SpecProblem>,
    /// The Lua traceback of a script that failed while loading.
    pub traceback: Option<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match (&p.key, p.line) {
                (Some(key), Some(line)) => {
                    write!(f, "{}:{line}: key `{key}`: {}", self.file, p.message)?
                }
                (Some(key), None) => write!(f, "{}: key `{key}`: {}", self.file, p.message)?,
                // Lua errors already start with file:line.
                (None, _) if p.message.starts_with(&self.file) => f.write_str(&p.message)?,
                (None, _) => write!(f, "{}: {}", self.file, p.message)?,
            }
        }
        Ok(())
    }
}

impl LoadError {
    /// An error of `file` with one problem not tied to a key.
    pub fn one(file: &str, message: String) -> LoadError {
        LoadError {
            file: file.to_owned(),
            problems: vec![SpecProblem {
                key: None,
                message,
                line: None,
            }],
            traceback: None,
        }
    }

    /// The line the first problem points at: the key's line, or the line of a Lua error
    /// (`scripts/x.lua:3: ...`).
    pub fn line(&self) -> Option<u32> {
        let first = self.problems.first()?;
        first.line.or_else(|| {
            let rest = first.message.strip_prefix(&self.file)?.strip_prefix(':')?;
            rest.split(':').next()?.parse().ok()
        })
    }
}

const KEYS: &[&str] = &[
    "description",
    "schedule",
    "watch",
    "params",
    "timeout",
    "memory",
    "retries",
    "retry_delay",
    "retry_max_delay",
    "overlap",
    "after",
    "notify",
    "run",
];

/// How long evaluating a script's top level (not its `run`) may take.
pub const SPEC_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepted values of `retry_delay`.
pub const RETRY_DELAY_RANGE: DurationRange =
    DurationRange::new(Duration::ZERO, DAY.saturating_mul(30));
/// Accepted values of `schedule.jitter`.
pub const JITTER_RANGE: DurationRange = DurationRange::new(Duration::ZERO, DAY);
/// Accepted values of `watch.settle`.
pub const SETTLE_RANGE: DurationRange = DurationRange::new(Duration::ZERO, DAY);
/// Accepted values of `watch.poll`: often enough to be useful, never a busy loop.
pub const POLL_RANGE: DurationRange = DurationRange::new(Duration::from_millis(100), DAY);

/// Names no job may take: `validate` is the API's check-only route (`POST
/// /api/v1/jobs/validate`), which would hide a job of that name from `/api/v1/jobs/{name}`.
pub const RESERVED_NAMES: &[&str] = &["validate"];

/// The job name for a script path, or an error when the file name is not usable as one.
pub fn job_name(path: &Path) -> Result<String, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("{}: not a usable job file name", path.display()))?;
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{}: job names may use letters, digits, `_` and `-` only",
            path.display()
        ));
    }
    if RESERVED_NAMES.contains(&stem) {
        return Err(format!(
            "{}: `{stem}` is reserved (the API's `POST /api/v1/jobs/validate` checks scripts); \
             rename the file",
            path.display()
        ));
    }
    Ok(stem.to_string())
}

/// The VM options for a job's runs and spec evaluation.
pub fn vm_options(config: &Config, memory: Option<u64>, timeout: Duration) -> VmOptions {
    VmOptions {
        plugins_dir: config.plugins_dir.clone(),
        plugins_label: config.display_path(&config.plugins_dir),
        memory: memory.unwrap_or(config.limits.memory),
        timeout,
        storage: config.storage.clone(),
        redis: config.redis.clone(),
        databases: config.databases.clone(),
        http: config.http.clone(),
    }
}

/// Reads and validates a job script. The script's top level is evaluated in a child process
/// ([`super::isolate`]), so a script that loops or crashes fails to load instead of taking the
/// caller down; the validation that follows is plain Rust, and a panic in it (a bug) is
/// reported as this script's load error too.
pub fn load_job(config: &Config, path: &Path) -> Result<JobSpec, LoadError> {
    let chunk_name = config.display_path(path);
    let fail = |message: String| LoadError::one(&chunk_name, message);
    job_name(path).map_err(fail)?;
    let source = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    load_source(config, path, source)
}

/// Loads a job from `source` as if it were the text of the script at `path` (which need not
/// exist): the same checks as [`load_job`], for a script sent over the API before it is written.
pub fn load_source(config: &Config, path: &Path, source: String) -> Result<JobSpec, LoadError> {
    let chunk_name = config.display_path(path);
    let fail = |message: String| LoadError::one(&chunk_name, message);
    let name = job_name(path).map_err(fail)?;
    let table =
        super::isolate::evaluate(config, &chunk_name, &source).map_err(|e: ScriptError| {
            LoadError {
                file: chunk_name.clone(),
                problems: vec![SpecProblem {
                    key: None,
                    message: e.message,
                    line: None,
                }],
                traceback: e.traceback,
            }
        })?;
    let watch_key = match table.fields.get("watch") {
        Some(Value::String(_)) => "watch",
        _ => "watch.path",
    };
    let validated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut problems = Vec::new();
        let spec = validate(
            &name,
            path,
            &chunk_name,
            source,
            table.fields,
            table.run_type,
            &mut problems,
        );
        (spec, problems)
    }));
    let (spec, mut problems) = validated.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        fail(format!(
            "internal error while validating the job spec (a bug in ferry, please report it): {what}"
        ))
    })?;
    if let Some(w) = &spec.watch
        && let Err(e) = confine_dir(&config.storage, &w.path)
    {
        let message = match e {
            ErrorKind::Denied(m) => m,
            other => format!(
                "{other}; a watched folder must lie under the allowed roots: {} (`allow` under [storage] in ferry.toml)",
                Confinement::new(&config.storage.allowed, &[]).roots_text()
            ),
        };
        problems.push(SpecProblem {
            key: Some(watch_key.to_string()),
            message,
            line: None,
        });
    }
    if let Some(n) = &spec.notify
        && n.email.as_ref().is_some_and(|to| !to.is_empty())
        && config.notify.smtp.is_none()
    {
        problems.push(SpecProblem {
            key: Some("notify.email".to_string()),
            message:
                "e-mail needs a mail server: add [notify.smtp] with `host` and `from` to ferry.toml"
                    .into(),
            line: None,
        });
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        for p in &mut problems {
            p.line = p
                .key
                .as_deref()
                .and_then(|k| super::locate::key_line(&spec.source, k));
        }
        Err(LoadError {
            file: chunk_name,
            problems,
            traceback: None,
        })
    }
}

struct Checker<'a> {
    problems: &'a mut Vec<SpecProblem>,
}

impl Checker<'_> {
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(SpecProblem {
            key: Some(key.to_string()),
            message: message.into(),
            line: None,
        });
    }

    /// A true/false flag; `false` (and a problem) when it is something else.
    fn flag(&mut self, key: &str, v: Option<&Value>) -> bool {
        match v {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.bad(key, format!("expected true or false, got {}", show(other)));
                false
            }
        }
    }

    fn string(&mut self, key: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.bad(key, format!("expected a string, got {}", json_type(other)));
                None
            }
        }
    }

    /// A duration given as text (`"30s"`) or a number of seconds, checked against `range`.
    fn duration(&mut self, key: &str, v: &Value, range: DurationRange) -> Option<Duration> {
        let checked = match v {
            Value::String(s) => range.parse(s),
            Value::Number(n) => match n.as_f64() {
                Some(f) => range.seconds(f),
                None => Err(format!("must be {}, got {n}", range.describe())),
            },
            other => {
                self.bad(
                    key,
                    format!(
                        "expected a duration like \"30s\", \"10m\" or \"1h30m\", got {}",
                        json_type(other)
                    ),
                );
                return None;
            }
        };
        checked.map_err(|m| self.bad(key, m)).ok()
    }

    /// A size given as text (`"64MiB"`) or a whole number of bytes, checked against `range`.
    fn size(&mut self, key: &str, v: &Value, range: SizeRange) -> Option<u64> {
        let checked = match v {
            Value::String(s) => range.parse(s),
            Value::Number(n) => match n.as_i64() {
                Some(i) => range.integer(i),
                None => Err(format!(
                    "must be a whole number of bytes {}, got {n}",
                    range.describe()
                )),
            },
            other => Err(format!(
                "expected a size like \"64MiB\" or a number of bytes, got {}",
                json_type(other)
            )),
        };
        checked.map_err(|m| self.bad(key, m)).ok()
    }

    fn choice<T: Copy>(&mut self, key: &str, v: &Value, options: &[(&str, T)]) -> Option<T> {
        let names: Vec<_> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let found = v
            .as_str()
            .and_then(|s| options.iter().find(|(n, _)| *n == s).map(|(_, t)| *t));
        if found.is_none() {
            self.bad(
                key,
                format!("expected one of {}, got {}", names.join(", "), show(v)),
            );
        }
        found
    }

    fn unknown_keys(&mut self, prefix: &str, map: &Map<String, Value>, allowed: &[&str]) {
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                self.bad(
                    &format!("{prefix}{k}"),
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => json_type(other).to_string(),
    }
}

fn validate(
    name: &str,
    path: &Path,
    chunk_name: &str,
    source: String,
    fields: Map<String, Value>,
    run_type: Option<String>,
    problems: &mut Vec<SpecProblem>,
) -> JobSpec {
    let mut c = Checker { problems };
    match run_type.as_deref() {
        Some("function") => {}
        Some(other) => c.bad("run", format!("expected a function, got {other}")),
        None => c.bad(
            "run",
            "missing; a job script must return a table with `run = function(ctx) ... end`",
        ),
    }
    c.unknown_keys("", &fields, KEYS);
    let mut spec = JobSpec {
        name: name.to_string(),
        path: path.to_path_buf(),
        chunk_name: chunk_name.to_string(),
        source,
        description: None,
        schedule: None,
        watch: None,
        params: BTreeMap::new(),
        timeout: None,
        memory: None,
        retries: 0,
        retry_delay: Duration::from_secs(30),
        retry_max_delay: None,
        overlap: Overlap::Skip,
        after: Vec::new(),
        notify: None,
    };
    if let Some(v) = fields.get("description") {
        spec.description = c.string("description", v);
    }
    if let Some(v) = fields.get("schedule") {
        spec.schedule = schedule(&mut c, v);
    }
    if let Some(v) = fields.get("watch") {
        spec.watch = watch(&mut c, v);
    }
    if let Some(v) = fields.get("params") {
        spec.params = params(&mut c, v);
    }
    if let Some(v) = fields.get("timeout") {
        spec.timeout = c.duration("timeout", v, TIMEOUT_RANGE);
    }
    if let Some(v) = fields.get("memory") {
        spec.memory = c.size("memory", v, MEMORY_RANGE);
    }
    if let Some(v) = fields.get("retries") {
        match v.as_u64().filter(|n| *n <= 100) {
            Some(n) => spec.retries = n as u32,
            None => c.bad(
                "retries",
                format!("expected a whole number from 0 to 100, got {}", show(v)),
            ),
        }
    }
    if let Some(v) = fields.get("retry_delay")
        && let Some(d) = c.duration("retry_delay", v, RETRY_DELAY_RANGE)
    {
        spec.retry_delay = d;
    }
    if let Some(v) = fields.get("retry_max_delay") {
        spec.retry_max_delay = c.duration("retry_max_delay", v, RETRY_MAX_DELAY_RANGE);
        if let Some(max) = spec.retry_max_delay
            && max < spec.retry_delay
        {
            c.bad(
                "retry_max_delay",
                "must not be shorter than retry_delay (the delay of the first retry)",
            );
        }
    }
    if let Some(v) = fields.get("overlap")
        && let Some(o) = c.choice(
            "overlap",
            v,
            &[
                ("skip", Overlap::Skip),
                ("queue", Overlap::Queue),
                ("allow", Overlap::Allow),
            ],
        )
    {
        spec.overlap = o;
    }
    if let Some(v) = fields.get("after") {
        spec.after = after(&mut c, name, v);
    }
    if let Some(v) = fields.get("notify") {
        spec.notify = notify(&mut c, v);
    }
    spec
}

/// `notify = false`, or a table of `on`, `webhook`, `webhook_secret`, `slack`, `email` whose
/// keys replace the `[notify]` defaults. URLs and the secret may be `"${VAR}"`.
fn notify(c: &mut Checker<'_>, v: &Value) -> Option<crate::notify::JobNotify> {
    use crate::notify::rules::{JobNotify, Outcome, SecretUrl, Webhook, parse_address};
    let map = match v {
        Value::Bool(false) => {
            return Some(JobNotify {
                off: true,
                ..JobNotify::default()
            });
        }
        Value::Object(m) => m,
        other => {
            c.bad(
                "notify",
                format!(
                    "expected a table like {{ on = {{ \"failure\" }}, webhook = \"https://...\" }} or false, got {}",
                    show(other)
                ),
            );
            return None;
        }
    };
    c.unknown_keys(
        "notify.",
        map,
        &["on", "webhook", "webhook_secret", "slack", "email"],
    );
    let mut out = JobNotify::default();
    // A list of strings, or one string; `false` for "none" where `allow_false`.
    let strings = |c: &mut Checker<'_>, key: &str, v: &Value| -> Option<Vec<String>> {
        let items: Vec<&Value> = match v {
            Value::Array(list) => list.iter().collect(),
            Value::Bool(false) => return Some(Vec::new()),
            other => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            out.push(c.string(key, item)?);
        }
        Some(out)
    };
    let expand = |c: &mut Checker<'_>, key: &str, text: String| -> Option<String> {
        crate::config::expand_env(&text)
            .map_err(|m| c.bad(key, m))
            .ok()
    };
    let url = |c: &mut Checker<'_>, key: &str, v: &Value| -> Option<Option<SecretUrl>> {
        match v {
            Value::Bool(false) => Some(None),
            Value::String(s) => {
                let s = expand(c, key, s.clone())?;
                SecretUrl::parse(&s)
                    .map_err(|m| c.bad(key, m))
                    .ok()
                    .map(Some)
            }
            other => {
                c.bad(
                    key,
                    format!("expected an http(s) URL or false, got {}", json_type(other)),
                );
                None
            }
        }
    };
    if let Some(v) = map.get("on")
        && let Some(names) = strings(c, "notify.on", v)
    {
        match Outcome::parse_list(names.iter().map(String::as_str)) {
            Ok(on) => out.on = Some(on),
            Err(m) => c.bad("notify.on", m),
        }
    }
    let secret = match map.get("webhook_secret") {
        Some(v) => c
            .string("notify.webhook_secret", v)
            .and_then(|s| expand(c, "notify.webhook_secret", s))
            .map(crate::storage::Secret::new),
        None => None,
    };
    if let Some(v) = map.get("webhook") {
        out.webhook = url(c, "notify.webhook", v).map(|u| {
            u.map(|url| Webhook {
                url,
                secret: secret.clone(),
            })
        });
    }
    if secret.is_some() && !matches!(out.webhook, Some(Some(_))) {
        c.bad(
            "notify.webhook_secret",
            "set without `webhook` (the URL it signs requests to)",
        );
    }
    if let Some(v) = map.get("slack") {
        out.slack = url(c, "notify.slack", v);
    }
    if let Some(v) = map.get("email")
        && let Some(list) = strings(c, "notify.email", v)
    {
        let mut to = Vec::new();
        for a in list {
            match parse_address(&a) {
                Ok(a) => to.push(a),
                Err(m) => c.bad("notify.email", m),
            }
        }
        out.email = Some(to);
    }
    Some(out)
}

/// `after = { job = "x", on = "success" }`, a list of such, or just a job name (on success).
fn after(c: &mut Checker<'_>, me: &str, v: &Value) -> Vec<super::chain::After> {
    use super::chain::{After, On};
    let items: Vec<(String, &Value)> = match v {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("after[{}]", i + 1), v))
            .collect(),
        other => vec![("after".to_string(), other)],
    };
    let mut out = Vec::new();
    for (key, item) in items {
        let (job, on) = match item {
            Value::String(j) => (Some(j.clone()), vec![On::Success]),
            Value::Object(map) => {
                c.unknown_keys(&format!("{key}."), map, &["job", "on"]);
                let job = match map.get("job") {
                    Some(j) => c.string(&format!("{key}.job"), j),
                    None => {
                        c.bad(
                            &format!("{key}.job"),
                            "missing; expected the upstream job's name",
                        );
                        None
                    }
                };
                let on = match map.get("on") {
                    None => vec![On::Success],
                    Some(Value::Array(list)) => list
                        .iter()
                        .filter_map(|o| c.choice(&format!("{key}.on"), o, On::NAMES))
                        .collect(),
                    Some(o) => c
                        .choice(&format!("{key}.on"), o, On::NAMES)
                        .into_iter()
                        .collect(),
                };
                (job, on)
            }
            other => {
                c.bad(
                    &key,
                    format!(
                        "expected {{ job = \"name\", on = \"success\" }} or a job name, got {}",
                        json_type(other)
                    ),
                );
                continue;
            }
        };
        let Some(job) = job else { continue };
        if job == me {
            c.bad(
                &format!("{key}.job"),
                format!("a job cannot run after itself (cycle: {me} → {me})"),
            );
            continue;
        }
        if job.is_empty() || job.contains(['/', '.']) {
            c.bad(
                &format!("{key}.job"),
                format!("expected a job name, got {job:?}"),
            );
            continue;
        }
        out.push(After { job, on });
    }
    out
}

fn schedule(c: &mut Checker<'_>, v: &Value) -> Option<Schedule> {
    match v {
        Value::String(expr) => Schedule::parse(expr, None)
            .map_err(|m| c.bad("schedule", m))
            .ok(),
        Value::Object(map) => {
            c.unknown_keys("schedule.", map, &["cron", "timezone", "missed", "jitter"]);
            let expr = match map.get("cron") {
                Some(v) => c.string("schedule.cron", v)?,
                None => {
                    c.bad(
                        "schedule.cron",
                        "missing; expected a cron expression like \"30 2 * * *\"",
                    );
                    return None;
                }
            };
            let tz = match map.get("timezone") {
                Some(v) => Some(c.string("schedule.timezone", v)?),
                None => None,
            };
            let mut s = Schedule::parse(&expr, tz.as_deref())
                .map_err(|m| {
                    let key = if m.contains("time zone") {
                        "schedule.timezone"
                    } else {
                        "schedule.cron"
                    };
                    c.bad(key, m)
                })
                .ok()?;
            if let Some(v) = map.get("missed") {
                s.missed = c.choice(
                    "schedule.missed",
                    v,
                    &[
                        ("skip", Missed::Skip),
                        ("once", Missed::Once),
                        ("all", Missed::All),
                    ],
                )?;
            }
            if let Some(v) = map.get("jitter") {
                s.jitter = c.duration("schedule.jitter", v, JITTER_RANGE)?;
            }
            Some(s)
        }
        other => {
            c.bad(
                "schedule",
                format!(
                    "expected a cron expression string or a table with `cron`, got {}",
                    json_type(other)
                ),
            );
            None
        }
    }
}

fn watch(c: &mut Checker<'_>, v: &Value) -> Option<WatchSpec> {
    let default = |path: PathBuf, pattern: String| WatchSpec {
        path,
        pattern,
        settle: Duration::from_secs(1),
        after: AfterFile::Archive,
        poll: None,
    };
    match v {
        Value::String(s) => {
            let (dir, pattern) = split_watch(s);
            if dir.as_os_str().is_empty() {
                c.bad(
                    "watch",
                    format!(
                        "expected a folder and a pattern like \"inbox/orders/*.csv\", got {s:?}"
                    ),
                );
                return None;
            }
            Some(default(dir, pattern))
        }
        Value::Object(map) => {
            c.unknown_keys(
                "watch.",
                map,
                &["path", "pattern", "settle", "after", "poll"],
            );
            let path = match map.get("path") {
                Some(v) => c.string("watch.path", v)?,
                None => {
                    c.bad(
                        "watch.path",
                        "missing; expected the folder to watch, like \"inbox/orders\"",
                    );
                    return None;
                }
            };
            let pattern = match map.get("pattern") {
                Some(v) => c.string("watch.pattern", v)?,
                None => "*".to_string(),
            };
            let mut w = default(PathBuf::from(path), pattern);
            // Every key is checked before giving up, so that all problems are reported.
            let mut ok = true;
            if let Some(v) = map.get("settle") {
                match c.duration("watch.settle", v, SETTLE_RANGE) {
                    Some(d) => w.settle = d,
                    None => ok = false,
                }
            }
            if let Some(v) = map.get("poll") {
                w.poll = c.duration("watch.poll", v, POLL_RANGE);
                ok &= w.poll.is_some();
            }
            if let Some(v) = map.get("after") {
                let after = [
                    ("archive", AfterFile::Archive),
                    ("delete", AfterFile::Delete),
                ];
                match c.choice("watch.after", v, &after) {
                    Some(a) => w.after = a,
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            Some(w)
        }
        other => {
            c.bad(
                "watch",
                format!(
                    "expected \"folder/pattern\" or a table with `path`, got {}",
                    json_type(other)
                ),
            );
            None
        }
    }
}

/// Splits `inbox/orders/*.csv` into the folder and the file pattern.
fn split_watch(s: &str) -> (PathBuf, String) {
    match s.rsplit_once('/') {
        Some((dir, pat)) if pat.contains(['*', '?', '[']) => (PathBuf::from(dir), pat.to_string()),
        _ => (PathBuf::from(s), "*".to_string()),
    }
}

fn params(c: &mut Checker<'_>, v: &Value) -> BTreeMap<String, ParamSpec> {
    let mut out = BTreeMap::new();
    let map = match v {
        Value::Object(m) => m,
        other => {
            c.bad(
                "params",
                format!(
                    "expected a table of name = {{ type = ... }}, got {}",
                    json_type(other)
                ),
            );
            return out;
        }
    };
    for (name, decl) in map {
        let key = format!("params.{name}");
        let Value::Object(decl) = decl else {
            c.bad(
                &key,
                format!(
                    "expected a table like {{ type = \"string\" }}, got {}",
                    json_type(decl)
                ),
            );
            continue;
        };
        c.unknown_keys(
            &format!("{key}."),
            decl,
            &[
                "type",
                "items",
                "required",
                "default",
                "description",
                "secret",
            ],
        );
        let kind = match decl.get("type") {
            None => ParamType::String,
            Some(t) => match t.as_str().and_then(ParamType::parse) {
                Some(k) => k,
                None => {
                    c.bad(
                        &format!("{key}.type"),
                        format!("expected {}, got {}", ParamType::NAMES, show(t)),
                    );
                    continue;
                }
            },
        };
        let items = match decl.get("items") {
            None => None,
            Some(_) if kind != ParamType::Array => {
                c.bad(
                    &format!("{key}.items"),
                    format!(
                        "only an `array` param has items; this one is {}",
                        kind.name()
                    ),
                );
                None
            }
            Some(t) => match t.as_str().and_then(ParamType::parse) {
                Some(ParamType::Array) | None => {
                    c.bad(
                        &format!("{key}.items"),
                        format!(
                            "expected \"string\", \"integer\", \"number\", \"boolean\" or \"object\", got {}",
                            show(t)
                        ),
                    );
                    None
                }
                Some(item) => Some(item),
            },
        };
        let required = c.flag(&format!("{key}.required"), decl.get("required"));
        let probe = ParamSpec {
            kind,
            items,
            required: false,
            default: None,
            description: None,
            secret: false,
        };
        let default = match decl.get("default") {
            None => None,
            Some(d) => match kind
                .from_json(d)
                .filter(|_| !d.is_string() || kind == ParamType::String)
                .and_then(|v| probe.convert_items(name, v).ok())
            {
                Some(v) => Some(v),
                None => {
                    c.bad(
                        &format!("{key}.default"),
                        format!(
                            "expected {} (the param's type), got {}",
                            if matches!(kind, ParamType::Array | ParamType::Object) {
                                probe.expected()
                            } else {
                                format!("a {}", kind.name())
                            },
                            show(d)
                        ),
                    );
                    None
                }
            },
        };
        let description = match decl.get("description") {
            Some(d) => c.string(&format!("{key}.description"), d),
            None => None,
        };
        let secret = c.flag(&format!("{key}.secret"), decl.get("secret"));
        out.insert(
            name.clone(),
            ParamSpec {
                kind,
                items,
                required,
                default,
                description,
                secret,
            },
        );
    }
    out
}

/// A job spec from the fields a script's table would hold (as JSON; `run` is taken as a
/// function), for unit tests that need a job without a `ferry eval-spec` process. Panics on a
/// spec with problems.
#[cfg(test)]
pub(crate) fn spec_for_tests(name: &str, fields: Value) -> JobSpec {
    let Value::Object(fields) = fields else {
        panic!("the fields of job {name} are not an object")
    };
    let path = PathBuf::from(format!("scripts/{name}.lua"));
    let chunk_name = path.display().to_string();
    let mut problems = Vec::new();
    let spec = validate(
        name,
        &path,
        &chunk_name,
        String::new(),
        fields,
        Some("function".into()),
        &mut problems,
    );
    assert!(problems.is_empty(), "job {name}: {problems:?}");
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Editors check job scripts against `ferry.Job` in the shipped annotations: it must list
    /// exactly the keys a job spec takes.
    #[test]
    fn the_annotated_job_class_has_every_spec_key() {
        let types = include_str!("../../lua/types/ferry.lua");
        let mut fields: Vec<&str> = types
            .lines()
            .skip_while(|l| *l != "---@class ferry.Job")
            .skip(1)
            .take_while(|l| l.starts_with("---@field "))
            .filter_map(|l| l["---@field ".len()..].split_whitespace().next())
            .map(|f| f.trim_end_matches('?'))
            .collect();
        fields.sort_unstable();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(
            fields, keys,
            "---@class ferry.Job in lua/types/ferry.lua (left) vs KEYS"
        );
    }

    fn check(fields: Value, run: Option<&str>) -> Vec<String> {
        let mut problems = Vec::new();
        let Value::Object(map) = fields else { panic!() };
        validate(
            "j",
            Path::new("scripts/j.lua"),
            "scripts/j.lua",
            String::new(),
            map,
            run.map(String::from),
            &mut problems,
        );
        problems
            .into_iter()
            .map(|p| format!("{}: {}", p.key.unwrap_or_default(), p.message))
            .collect()
    }

    #[test]
    fn valid_spec_has_no_problems() {
        let spec = serde_json::json!({
            "description": "d", "schedule": {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "missed": "once"},
            "watch": "inbox/orders/*.csv", "params": {"since": {"type": "string", "default": "x"}},
            "timeout": "10m", "retries": 2, "retry_delay": "30s", "overlap": "queue", "memory": "64MiB"
        });
        assert!(check(spec, Some("function")).is_empty());
    }

    #[test]
    fn each_problem_is_reported_with_its_key() {
        let cases = [
            (serde_json::json!({}), None, "run: missing"),
            (
                serde_json::json!({}),
                Some("string"),
                "run: expected a function",
            ),
            (
                serde_json::json!({"timout": "1s"}),
                Some("function"),
                "timout: unknown key",
            ),
            (
                serde_json::json!({"timeout": "10 minutes"}),
                Some("function"),
                "timeout: expected a duration",
            ),
            (
                serde_json::json!({"timeout": true}),
                Some("function"),
                "timeout: expected a duration",
            ),
            (
                serde_json::json!({"schedule": "61 * * * *"}),
                Some("function"),
                "schedule: invalid cron",
            ),
            (
                serde_json::json!({"schedule": {"cron": "@daily", "timezone": "Nowhere"}}),
                Some("function"),
                "schedule.timezone: unknown time zone",
            ),
            (
                serde_json::json!({"schedule": 5}),
                Some("function"),
                "schedule: expected a cron",
            ),
            (
                serde_json::json!({"overlap": "sometimes"}),
                Some("function"),
                "overlap: expected one of",
            ),
            (
                serde_json::json!({"retries": -1}),
                Some("function"),
                "retries: expected a whole number",
            ),
            (
                serde_json::json!({"params": {"n": {"type": "int"}}}),
                Some("function"),
                "params.n.type: expected",
            ),
            (
                serde_json::json!({"params": {"n": {"type": "integer", "default": "x"}}}),
                Some("function"),
                "params.n.default: expected a integer",
            ),
            (
                serde_json::json!({"watch": {"pattern": "*"}}),
                Some("function"),
                "watch.path: missing",
            ),
            (
                serde_json::json!({"memory": "lots"}),
                Some("function"),
                "memory: expected a size",
            ),
        ];
        for (fields, run, want) in cases {
            let got = check(fields.clone(), run);
            assert!(
                got.iter().any(|p| p.starts_with(want)),
                "{fields} → {got:?}, want {want}"
            );
        }
        let many = check(serde_json::json!({"timeout": "x", "overlap": "y"}), None);
        assert_eq!(many.len(), 3, "all problems are reported: {many:?}");
    }
}
