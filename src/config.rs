//! `ferry.toml` and the zero-config defaults.
//!
//! Configuration is read in two stages: [`FileConfig`] is the serde schema of the file
//! (`deny_unknown_fields`, so a typo is an error rather than a silently ignored key), and
//! [`Config`] is the validated runtime form with every path resolved against the project root
//! and every duration and size parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::db::redis::{
    CONNECT_TIMEOUT_RANGE as REDIS_CONNECT_TIMEOUT_RANGE, DB_RANGE as REDIS_DB_RANGE, RedisOptions,
    RedisTarget, TIMEOUT_RANGE as REDIS_TIMEOUT_RANGE,
};
use crate::storage::{S3Options, Secret, StorageConfig, StoreSpec, StoreUrl};
use crate::units::{CountRange, DAY, DurationRange, SizeRange};

/// Name of the config file looked up in the working directory when `--config` is not given.
pub const CONFIG_FILE: &str = "ferry.toml";

// The accepted range of every duration, size and count of `ferry.toml` (and of the job spec
// keys that override them). Values outside are refused with the key and the range, so no
// later arithmetic on them (deadlines, retry times, retention cut-offs) can overflow.

/// `timeout` of a run (`[limits]` and job specs).
pub const TIMEOUT_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(1), DAY.saturating_mul(30));
/// Lua memory limit of a run (`[limits]` and job specs).
pub const MEMORY_RANGE: SizeRange = SizeRange::new(1 << 20, 1 << 40);
/// `[history] lease`: long enough for a host to renew it a few times, short enough that a dead
/// host's runs are taken over soon.
pub const LEASE_RANGE: DurationRange =
    DurationRange::new(Duration::from_secs(3), Duration::from_secs(3600));
/// `[limits] kill_grace`.
pub const KILL_GRACE_RANGE: DurationRange =
    DurationRange::new(Duration::ZERO, Duration::from_secs(3600));
/// `[limits] worker_headroom`: a worker needs some address space of its own.
pub const HEADROOM_RANGE: SizeRange = SizeRange::new(64 << 20, 1 << 40);
/// `[daemon] shutdown_grace`.
pub const SHUTDOWN_GRACE_RANGE: DurationRange = DurationRange::new(Duration::ZERO, DAY);
/// `[daemon] catchup_window`.
pub const CATCHUP_WINDOW_RANGE: DurationRange =
    DurationRange::new(Duration::ZERO, DAY.saturating_mul(366));
/// `retry_max_delay` (`[daemon]` and job specs).
pub const RETRY_MAX_DELAY_RANGE: DurationRange =
    DurationRange::new(Duration::from_secs(1), DAY.saturating_mul(30));
/// The default longest delay between two attempts of a job.
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(6 * 3600);
/// `[daemon] concurrency`.
pub const CONCURRENCY_RANGE: CountRange = CountRange::new(1, 1024);
/// `[daemon] warm_workers`.
pub const WARM_WORKERS_RANGE: CountRange = CountRange::new(0, 64);
/// `[daemon] catchup_max`.
pub const CATCHUP_MAX_RANGE: CountRange = CountRange::new(0, 100_000);
/// `[retention] days`.
pub const RETENTION_DAYS_RANGE: CountRange = CountRange::new(1, 36_500);
/// `[retention] runs_per_job`.
pub const RUNS_PER_JOB_RANGE: CountRange = CountRange::new(1, 100_000_000);
/// `[api] max_upload`.
pub const MAX_UPLOAD_RANGE: SizeRange = SizeRange::new(1, 1 << 40);

/// Errors while reading or validating `ferry.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A value has the right type but an invalid content.
    #[error("invalid config {path}: {key}: {message}")]
    Value {
        /// The config file (or `<defaults>`).
        path: PathBuf,
        /// The dotted key, e.g. `limits.timeout`.
        key: String,
        /// What was expected.
        message: String,
    },
    /// The working directory could not be determined.
    #[error("cannot determine the working directory: {0}")]
    Cwd(std::io::Error),
    /// Neither the working directory nor any folder above it is a ferry project.
    #[error(
        "not inside a ferry project: no ferry.toml or scripts/ folder in {cwd} or any folder above \
         it; run `ferry init` to make one here, or name one with --root DIR (FERRY_ROOT) or \
         --config FILE (FERRY_CONFIG)"
    )]
    NoProject {
        /// Where the search started.
        cwd: PathBuf,
    },
    /// `--root` (or `FERRY_ROOT`) does not name a folder.
    #[error("project root {path} is not a folder ({how})")]
    BadRoot {
        /// The path given.
        path: PathBuf,
        /// How it was given (`--root`, `FERRY_ROOT`).
        how: &'static str,
    },
}

/// A TOML error as ferry reports it: the line, the column and what the parser expected, without
/// the quoted source line the parser's own message shows (a misspelt key's line may hold a
/// secret: `webhok = "https://hooks.example.com/TOKEN"`).
fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // The key the error is about (`section.key`), read from the source without its value.
    let lines: Vec<&str> = text.lines().collect();
    let key = lines
        .get(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    let section = lines[..(line - 1).min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let at = match (section, key) {
        (Some(s), Some(k)) => format!(" ({s}.{k})"),
        (None, Some(k)) => format!(" ({k})"),
        _ => String::new(),
    };
    format!("line {line}, column {column}{at}: {message}")
}

/// Where a project was found: its root folder and its config file, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The project root: paths in the config are relative to it.
    pub root: PathBuf,
    /// The config file, when there is one.
    pub file: Option<PathBuf>,
}

/// Finds the project the way git finds its repository: the config file given (`--config`,
/// `FERRY_CONFIG`; the root is its folder), else the root given (`--root`, `FERRY_ROOT`), else
/// the nearest of `cwd` and the folders above it that holds a `ferry.toml` or a `scripts/`
/// folder. `None` when nothing names or holds a project.
pub fn locate(
    cwd: &Path,
    config: Option<&Path>,
    root: Option<&Path>,
) -> Result<Option<Location>, ConfigError> {
    if let Some(file) = config {
        let file = cwd.join(file);
        if !file.is_file() {
            return Err(ConfigError::Read {
                path: file,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let root = match root {
            Some(r) => cwd.join(r),
            None => file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| cwd.into()),
        };
        return Ok(Some(Location {
            root,
            file: Some(file),
        }));
    }
    if let Some(r) = root {
        let root = cwd.join(r);
        if !root.is_dir() {
            return Err(ConfigError::BadRoot {
                path: root,
                how: "--root or FERRY_ROOT",
            });
        }
        let file = root.join(CONFIG_FILE);
        return Ok(Some(Location {
            file: file.is_file().then_some(file),
            root,
        }));
    }
    for dir in cwd.ancestors() {
        let file = dir.join(CONFIG_FILE);
        if file.is_file() {
            return Ok(Some(Location {
                root: dir.to_path_buf(),
                file: Some(file),
            }));
        }
        if dir.join("scripts").is_dir() {
            return Ok(Some(Location {
                root: dir.to_path_buf(),
                file: None,
            }));
        }
    }
    Ok(None)
}

/// The schema of `ferry.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where scripts, plugins, inbox and data live.
    #[serde(default)]
    pub paths: PathsSection,
    /// Default limits for every run; a job may override `timeout` and `memory`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Secrets by name, readable by scripts through `ctx.secret(name)`. A value of the form
    /// `${VAR}` is read from the environment variable `VAR`.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The daemon (`ferry serve`).
    #[serde(default)]
    pub daemon: DaemonSection,
    /// How long the run history is kept.
    #[serde(default)]
    pub retention: RetentionSection,
    /// The HTTP API of `ferry serve`.
    #[serde(default)]
    pub api: ApiSection,
    /// Where local stores may live.
    #[serde(default)]
    pub storage: StorageSection,
    /// Named stores, opened in scripts with `ferry.store("NAME")`.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreSection>,
    /// Named Redis servers, reached in scripts with `ferry.redis.connect("NAME")`.
    #[serde(default)]
    pub redis: BTreeMap<String, RedisSection>,
    /// Which hosts `ferry.http` may call.
    #[serde(default)]
    pub http: HttpSection,
    /// Named server databases (PostgreSQL, MySQL), reached with `ferry.postgres.connect("NAME")`
    /// / `ferry.mysql.connect("NAME")` and the plugins' `db = "NAME"`.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseSection>,
    /// Notification defaults for every job (a job's `notify` keys override them).
    #[serde(default)]
    pub notify: NotifySection,
    /// Where the run history and the queue live: SQLite (`[paths] history`, the default) or a
    /// PostgreSQL database shared by several hosts.
    #[serde(default)]
    pub history: HistorySection,
}

/// `[history]`: a PostgreSQL database for the history and the queue, shared by every
/// `ferry serve` that names it (see docs/scale-out.md). Without `url`, the SQLite file of
/// `[paths] history`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    /// `postgres://USER@HOST[:PORT]/DATABASE`, without a password.
    pub url: Option<String>,
    /// The database password; write it as `"${VAR}"` to read it from the environment.
    pub password: Option<String>,
    /// How long a run claimed by a host stays its own without the host renewing it (it renews
    /// at a third of this); after that another host closes it as `interrupted` and retries it.
    /// Default `60s`.
    pub lease: Option<String>,
    /// TLS to the database, as `[databases.NAME] sslmode`: `disable`, `prefer`, `require`,
    /// `verify-ca` or `verify-full` (wins over the URL's `sslmode`; default `prefer`).
    pub sslmode: Option<String>,
    /// A PEM file of the CA(s) the server's certificate must chain to (relative to the project
    /// folder), instead of the platform's roots.
    pub ca_file: Option<String>,
}

/// A PostgreSQL history: its URL (never with a password, so it can be shown) and the
/// password, which is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// `postgres://USER@HOST[:PORT]/DATABASE`.
    pub url: String,
    /// The password, if any.
    pub password: Option<String>,
    /// How long a claimed run stays its host's without renewal.
    pub lease: Duration,
    /// `[history] sslmode`; `None` for the URL's (`prefer` by default).
    pub sslmode: Option<crate::db::postgres::SslMode>,
    /// `[history] ca_file`.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("lease", &self.lease)
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PostgresTarget {
    /// Checks a `postgres://` URL: the scheme, that it parses, and that it holds no password
    /// (which would be shown wherever the URL is). Errors say what is wrong, never the URL's
    /// secret parts.
    pub fn new(url: &str, password: Option<String>) -> Result<PostgresTarget, String> {
        Self::with_lease(url, password, crate::jobs::owner::LEASE)
    }

    /// [`PostgresTarget::new`] with a lease other than the default.
    pub fn with_lease(
        url: &str,
        password: Option<String>,
        lease: Duration,
    ) -> Result<PostgresTarget, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!("not a URL ({e}); expected postgres://USER@HOST[:PORT]/DATABASE")
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "unsupported URL scheme {:?}; expected postgres://USER@HOST[:PORT]/DATABASE",
                parsed.scheme()
            ));
        }
        if parsed.password().is_some() {
            return Err(
                "the URL holds a password; write it as [history] password = \"${VAR}\" instead"
                    .into(),
            );
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(
                "the URL names no host; expected postgres://USER@HOST[:PORT]/DATABASE".into(),
            );
        }
        url.parse::<postgres::Config>()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        Ok(PostgresTarget {
            url: url.to_string(),
            password,
            lease,
            sslmode: None,
            ca_file: None,
        })
    }

    /// The target with `[history] sslmode` (checked) and `ca_file` (which must exist).
    pub fn with_tls(
        mut self,
        sslmode: Option<&str>,
        ca_file: Option<PathBuf>,
    ) -> Result<PostgresTarget, (&'static str, String)> {
        if let Some(m) = sslmode {
            self.sslmode = Some(crate::db::postgres::SslMode::parse(m).ok_or_else(|| {
                (
                    "history.sslmode",
                    format!("`{m}`: expected disable, prefer, require, verify-ca or verify-full"),
                )
            })?);
        }
        if let Some(f) = &ca_file
            && !f.is_file()
        {
            return Err((
                "history.ca_file",
                format!("cannot read {}: no such file", f.display()),
            ));
        }
        self.ca_file = ca_file;
        Ok(self)
    }
}

/// `[http]`: the hosts scripts may call with `ferry.http`. Without `allow`, every host that is
/// not denied; link-local and cloud metadata addresses only when an `allow` entry names them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Host names (`api.example.com`), wildcards (`*.example.com`), addresses or networks
    /// (`10.0.0.0/8`), or `*`. When given, only these.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The same patterns, refused even when `allow` matches.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `[notify]`: when and where the daemon reports the ends of runs. URLs and credentials may be
/// written as `"${VAR}"` to read them from the environment; they are never logged or shown
/// (URLs appear as `scheme://host/…`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// The events notified about: `failure`, `success`, `recovered`, `skipped`. Default
    /// `["failure"]`.
    pub on: Option<Vec<String>>,
    /// A webhook receiving a JSON POST per notification.
    pub webhook: Option<String>,
    /// Key of the HMAC-SHA256 signature (`X-Ferry-Signature`) of webhook requests.
    pub webhook_secret: Option<String>,
    /// A Slack-compatible incoming webhook URL.
    pub slack: Option<String>,
    /// E-mail recipients (needs `[notify.smtp]`).
    pub email: Option<Vec<String>>,
    /// Base of the run links in notifications (`<public_url>/runs/ID`). Default
    /// `http://<[api] listen>`.
    pub public_url: Option<String>,
    /// Attempts per notification before it is recorded as failed. Default 5.
    pub attempts: Option<u32>,
    /// Delay before the second attempt, doubling each time (up to 10 minutes). Default `10s`.
    pub backoff: Option<String>,
    /// Limit of one attempt. Default `10s`.
    pub timeout: Option<String>,
    /// The mail server of e-mail notifications.
    pub smtp: Option<SmtpSection>,
}

/// `[notify.smtp]`: the mail server e-mail notifications go through.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// Host name.
    pub host: Option<String>,
    /// Port. Default 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `"starttls"` (default), `"tls"` (SMTPS) or `"none"` (plain SMTP, for a local relay).
    pub tls: Option<String>,
    /// Login name.
    pub username: Option<String>,
    /// Password (`"${VAR}"` reads an environment variable).
    pub password: Option<String>,
    /// The sender, e.g. `"ferry <ferry@example.com>"`.
    pub from: Option<String>,
    /// PEM file of the CA(s) the server's certificate must chain to (relative to the project
    /// root), instead of the system's trust store.
    pub ca_file: Option<PathBuf>,
}

/// `[redis.NAME]`: a named Redis server. The password may be written as `"${VAR}"` to read it
/// from the environment; it never appears in logs, errors, summaries or `url()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://[user:password@]host[:port][/db]` or `redis+unix:///path?db=N`.
    pub url: String,
    /// Password (`AUTH`); overrides one in the URL.
    pub password: Option<String>,
    /// ACL user name.
    pub username: Option<String>,
    /// Database number; overrides the URL's.
    pub db: Option<i64>,
    /// Limit for connecting (default `"5s"`).
    pub connect_timeout: Option<String>,
    /// Limit for each reply (default `"60s"`).
    pub timeout: Option<String>,
    /// `rediss://`: a PEM file of the CA(s) the server's certificate must chain to (relative to
    /// the project root), instead of the system's trust store.
    pub ca_file: Option<PathBuf>,
}

/// `[databases.NAME]`: a named PostgreSQL or MySQL database. The password may be in the URL,
/// in `password` (`"${VAR}"` reads the environment) or named by `password_secret`; it never
/// appears in logs, errors or output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `postgres://user@host:port/database` or `mysql://user@host:port/database`.
    pub url: String,
    /// Password; overrides one in the URL.
    pub password: Option<String>,
    /// The name of a secret holding the password (`FERRY_SECRET_NAME` or `[secrets]`).
    pub password_secret: Option<String>,
    /// TLS mode: `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub sslmode: Option<String>,
    /// A PEM file of the CA(s) the server's certificate must chain to (relative to the project
    /// root), instead of the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Limit for connecting (default `"10s"`).
    pub connect_timeout: Option<String>,
    /// The server's limit for each statement (default none).
    pub statement_timeout: Option<String>,
}

/// `[api]`: the HTTP API served by `ferry serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address to listen on. Default `127.0.0.1:7411`; `ferry serve --listen` overrides it.
    pub listen: Option<String>,
    /// Bearer token clients must send. `FERRY_TOKEN` in the environment overrides it. Without a
    /// token the API binds loopback addresses only. `"${VAR}"` reads an environment variable.
    pub token: Option<String>,
    /// Largest accepted upload. Default `1GiB`.
    pub max_upload: Option<String>,
}

/// `[daemon]`: how `ferry serve` schedules runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Runs going at once, all jobs together. Default: the number of CPU cores.
    pub concurrency: Option<usize>,
    /// On SIGTERM/SIGINT, how long running jobs may go on before they are cancelled. Default `30s`.
    pub shutdown_grace: Option<String>,
    /// How far back missed cron occurrences are looked for after downtime. Default `24h`.
    pub catchup_window: Option<String>,
    /// At most this many catch-up runs per job with `missed = "all"`. Default 100.
    pub catchup_max: Option<u32>,
    /// Worker processes kept started and waiting, so a run starts without a process start.
    /// Default 2; 0 starts a worker per run.
    pub warm_workers: Option<usize>,
    /// Longest delay between two attempts of a failed job (retry delays double each time up
    /// to this). Default `6h`; a job's `retry_max_delay` overrides it.
    pub retry_max_delay: Option<String>,
}

/// `[retention]`: runs (with their logs and artifact records) are deleted when older than
/// `days` or beyond the newest `runs_per_job` of their job. On by default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Keep runs this many days. Default 30.
    pub days: Option<u32>,
    /// Keep at most this many runs per job. Default 1000.
    pub runs_per_job: Option<u32>,
}

/// `[storage]`: the confinement of local stores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Folders under which local stores (relative paths, `file://` URLs) may live, relative to
    /// the project root unless absolute. Default: the data and inbox folders. A run started by a
    /// watched file may also use its watch folder. Symlinks that lead outside are refused.
    pub allow: Option<Vec<PathBuf>>,
}

/// `[stores.NAME]`: a named store. Credentials may be written as `"${VAR}"` to read them from
/// the environment; they never appear in logs, errors, summaries or `url()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `s3://bucket/prefix`, `file:///abs/path`, a path relative to the project root, or
    /// `memory://NAME`.
    pub url: String,
    /// S3: endpoint of an S3-compatible server, e.g. `"http://127.0.0.1:9000"`.
    pub endpoint: Option<String>,
    /// S3: region. Default `us-east-1` (or `AWS_REGION`).
    pub region: Option<String>,
    /// S3: access key id (or `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3: secret access key (or `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// S3: session token of temporary credentials.
    pub session_token: Option<String>,
    /// S3: allow a plain `http://` endpoint (implied by an `http://` endpoint).
    pub allow_http: Option<bool>,
    /// S3: path-style requests (`endpoint/bucket/key`, the default) when true; virtual-hosted
    /// (`bucket.endpoint/key`) when false. Also spelt `path-style`.
    #[serde(alias = "path-style")]
    pub path_style: Option<bool>,
}

/// `[paths]`: every entry is relative to the directory holding `ferry.toml` (or the working
/// directory when there is no config file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    /// Job scripts, one `NAME.lua` per job. Default `scripts`.
    pub scripts: Option<PathBuf>,
    /// Lua modules reachable with `require`. Default `plugins`.
    pub plugins: Option<PathBuf>,
    /// The default drop folder. Default `inbox`.
    pub inbox: Option<PathBuf>,
    /// Data folder: history database and local store. Default `data`.
    pub data: Option<PathBuf>,
    /// The run history database. Default `data/ferry.db`.
    pub history: Option<PathBuf>,
}

/// `[limits]`: defaults that apply to every run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Wall-clock limit of a run, e.g. `"1h"`. Default `1h`.
    pub timeout: Option<String>,
    /// Lua memory limit of a run, e.g. `"256MiB"`. Default `256MiB`.
    pub memory: Option<String>,
    /// How long past its deadline a worker may take to stop before it is killed. Default `5s`.
    pub kill_grace: Option<String>,
    /// Address space a worker process may reserve on top of the Lua limit (RLIMIT_AS), for
    /// buffers held by Rust and the runtime itself. Default `2GiB`.
    pub worker_headroom: Option<String>,
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// The project root: the config file's directory, or the working directory.
    pub root: PathBuf,
    /// Folder of job scripts.
    pub scripts_dir: PathBuf,
    /// Folder of Lua modules for `require`.
    pub plugins_dir: PathBuf,
    /// Default drop folder.
    pub inbox_dir: PathBuf,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Run history database file.
    pub history_path: PathBuf,
    /// Run limits.
    pub limits: Limits,
    /// Secrets from the config file (environment references already resolved).
    pub secrets: BTreeMap<String, String>,
    /// Daemon settings.
    pub daemon: Daemon,
    /// History retention.
    pub retention: Retention,
    /// HTTP API settings.
    pub api: Api,
    /// Allowed roots of local stores and the named stores.
    pub storage: StorageConfig,
    /// Named Redis servers: URL and options (environment references resolved).
    pub redis: BTreeMap<String, (String, RedisOptions)>,
    /// Named server databases (`[databases.NAME]`): look one up with `databases.get(name)`;
    /// its [`crate::db::NamedDatabase::scheme`] says PostgreSQL or MySQL.
    pub databases: BTreeMap<String, crate::db::NamedDatabase>,
    /// The hosts `ferry.http` may call.
    pub http: crate::http::HttpPolicy,
    /// Notification defaults and delivery settings.
    pub notify: crate::notify::Settings,
    /// The PostgreSQL history shared by several hosts (`[history] url`); `None` for the SQLite
    /// file at `history_path`.
    pub history_db: Option<PostgresTarget>,
}

/// Validated `[api]` settings.
#[derive(Debug, Clone)]
pub struct Api {
    /// Address to listen on.
    pub listen: String,
    /// The bearer token, if one is configured.
    pub token: Option<String>,
    /// Largest accepted upload in bytes.
    pub max_upload: u64,
}

/// The default API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7411";

/// Validated `[daemon]` settings.
#[derive(Debug, Clone, Copy)]
pub struct Daemon {
    /// Runs going at once.
    pub concurrency: usize,
    /// Grace for running jobs at shutdown.
    pub shutdown_grace: Duration,
    /// Look-back for missed cron occurrences.
    pub catchup_window: Duration,
    /// Bound on catch-up runs per job.
    pub catchup_max: u32,
    /// Idle workers kept warm.
    pub warm_workers: usize,
    /// Longest delay between two attempts of a job.
    pub retry_max_delay: Duration,
}

/// Validated `[retention]` settings.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Keep runs this many days.
    pub days: u32,
    /// Keep at most this many runs per job.
    pub runs_per_job: u32,
}

/// Limits that apply to a run unless the job overrides them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock limit of a run.
    pub timeout: Duration,
    /// Lua memory limit in bytes.
    pub memory: u64,
    /// Time a worker gets past its deadline before it is killed.
    pub kill_grace: Duration,
    /// Extra address space for a worker above the Lua memory limit.
    pub worker_headroom: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(3600),
            memory: 256 * 1024 * 1024,
            kill_grace: Duration::from_secs(5),
            worker_headroom: 2 * 1024 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Loads the configuration of a located project (see [`locate`]).
    pub fn load_at(location: &Location) -> Result<Config, ConfigError> {
        match &location.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::from_toml(&text, Some(path.clone()), location.root.clone())
            }
            None => Self::from_file_config(FileConfig::default(), None, location.root.clone()),
        }
    }

    /// The built-in defaults for a project rooted at `root` (a client of a daemon outside any
    /// project uses them; nothing is created).
    pub fn defaults_at(root: PathBuf) -> Result<Config, ConfigError> {
        Self::from_file_config(FileConfig::default(), None, root)
    }

    /// Loads the configuration: the file given, else `./ferry.toml` when present, else defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let cwd = std::env::current_dir().map_err(ConfigError::Cwd)?;
        let path = match explicit {
            Some(p) => Some(cwd.join(p)),
            None => {
                let p = cwd.join(CONFIG_FILE);
                p.is_file().then_some(p)
            }
        };
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let root = path.parent().map(Path::to_path_buf).unwrap_or(cwd);
                Self::from_toml(&text, Some(path), root)
            }
            None => Self::from_file_config(FileConfig::default(), None, cwd),
        }
    }

    /// Parses and validates config text; `root` is the directory paths are relative to.
    pub fn from_toml(
        text: &str,
        file: Option<PathBuf>,
        root: PathBuf,
    ) -> Result<Config, ConfigError> {
        let display = file.clone().unwrap_or_else(|| PathBuf::from("<config>"));
        let parsed: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: display,
            message: toml_error_message(text, &e),
        })?;
        Self::from_file_config(parsed, file, root)
    }

    fn from_file_config(
        fc: FileConfig,
        file: Option<PathBuf>,
        root: PathBuf,
    ) -> Result<Config, ConfigError> {
        let display = file.clone().unwrap_or_else(|| PathBuf::from("<defaults>"));
        let value_err = |key: &str, message: String| ConfigError::Value {
            path: display.clone(),
            key: key.to_string(),
            message,
        };
        let resolve = |p: Option<PathBuf>, default: &str| {
            root.join(p.unwrap_or_else(|| PathBuf::from(default)))
        };
        let data_dir = resolve(fc.paths.data, "data");
        let history_path = match fc.paths.history {
            Some(p) => root.join(p),
            None => data_dir.join("ferry.db"),
        };
        let defaults = Limits::default();
        let duration = |key: &str,
                        v: Option<String>,
                        range: DurationRange,
                        d: Duration|
         -> Result<Duration, ConfigError> {
            match v {
                Some(s) => range.parse(&s).map_err(|m| value_err(key, m)),
                None => Ok(d),
            }
        };
        let size =
            |key: &str, v: Option<String>, range: SizeRange, d: u64| -> Result<u64, ConfigError> {
                match v {
                    Some(s) => range.parse(&s).map_err(|m| value_err(key, m)),
                    None => Ok(d),
                }
            };
        let count = |key: &str, v: Option<u64>, range: CountRange, d: u64| match v {
            Some(n) => range.count(n).map_err(|m| value_err(key, m)),
            None => Ok(d),
        };
        let limits = Limits {
            timeout: duration(
                "limits.timeout",
                fc.limits.timeout,
                TIMEOUT_RANGE,
                defaults.timeout,
            )?,
            memory: size(
                "limits.memory",
                fc.limits.memory,
                MEMORY_RANGE,
                defaults.memory,
            )?,
            kill_grace: duration(
                "limits.kill_grace",
                fc.limits.kill_grace,
                KILL_GRACE_RANGE,
                defaults.kill_grace,
            )?,
            worker_headroom: size(
                "limits.worker_headroom",
                fc.limits.worker_headroom,
                HEADROOM_RANGE,
                defaults.worker_headroom,
            )?,
        };
        let mut secrets = BTreeMap::new();
        for (name, value) in fc.secrets {
            let resolved =
                expand_env(&value).map_err(|m| value_err(&format!("secrets.{name}"), m))?;
            secrets.insert(name, resolved);
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let daemon = Daemon {
            concurrency: count(
                "daemon.concurrency",
                fc.daemon.concurrency.map(|n| n as u64),
                CONCURRENCY_RANGE,
                cores.min(1024) as u64,
            )? as usize,
            shutdown_grace: duration(
                "daemon.shutdown_grace",
                fc.daemon.shutdown_grace,
                SHUTDOWN_GRACE_RANGE,
                Duration::from_secs(30),
            )?,
            catchup_window: duration(
                "daemon.catchup_window",
                fc.daemon.catchup_window,
                CATCHUP_WINDOW_RANGE,
                DAY,
            )?,
            catchup_max: count(
                "daemon.catchup_max",
                fc.daemon.catchup_max.map(u64::from),
                CATCHUP_MAX_RANGE,
                100,
            )? as u32,
            warm_workers: count(
                "daemon.warm_workers",
                fc.daemon.warm_workers.map(|n| n as u64),
                WARM_WORKERS_RANGE,
                2,
            )? as usize,
            retry_max_delay: duration(
                "daemon.retry_max_delay",
                fc.daemon.retry_max_delay,
                RETRY_MAX_DELAY_RANGE,
                DEFAULT_RETRY_MAX_DELAY,
            )?,
        };
        let retention = Retention {
            days: count(
                "retention.days",
                fc.retention.days.map(u64::from),
                RETENTION_DAYS_RANGE,
                30,
            )? as u32,
            runs_per_job: count(
                "retention.runs_per_job",
                fc.retention.runs_per_job.map(u64::from),
                RUNS_PER_JOB_RANGE,
                1000,
            )? as u32,
        };
        let token = match std::env::var("FERRY_TOKEN").ok().filter(|t| !t.is_empty()) {
            Some(t) => Some(t),
            None => match fc.api.token {
                Some(t) => Some(expand_env(&t).map_err(|m| value_err("api.token", m))?),
                None => None,
            },
        };
        if token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(value_err(
                "api.token",
                "must be at least 16 characters".into(),
            ));
        }
        let api = Api {
            listen: fc.api.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
            token,
            max_upload: size(
                "api.max_upload",
                fc.api.max_upload,
                MAX_UPLOAD_RANGE,
                1 << 30,
            )?,
        };
        let inbox_dir = resolve(fc.paths.inbox, "inbox");
        let allowed = match fc.storage.allow {
            Some(list) => list.into_iter().map(|p| root.join(p)).collect(),
            None => vec![data_dir.clone(), inbox_dir.clone()],
        };
        let mut storage = StorageConfig::new(root.clone(), allowed);
        storage.state_dir = data_dir.join(".ferry").join("pending");
        storage.artifacts_dir = data_dir.join(".ferry").join("artifacts");
        // ferry's own files (the storage journal, the daemon lock, the key that seals secret
        // params, runs' temporary folders) are off limits; a run is allowed its own temporary
        // folder explicitly.
        storage.protected = vec![data_dir.join(".ferry")];
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = history_path.clone().into_os_string();
            p.push(suffix);
            storage.protected.push(PathBuf::from(p));
        }
        for (name, section) in fc.stores {
            let spec = store_spec(&root, &name, section)
                .map_err(|(key, m)| value_err(&format!("stores.{name}{key}"), m))?;
            storage.stores.insert(name, spec);
        }
        let mut redis = BTreeMap::new();
        for (name, section) in fc.redis {
            let target = redis_spec(&root, &name, section)
                .map_err(|(key, m)| value_err(&format!("redis.{name}{key}"), m))?;
            redis.insert(name, target);
        }
        let mut databases = BTreeMap::new();
        for (name, section) in fc.databases {
            let spec = database_spec(&root, &name, section)
                .map_err(|(key, m)| value_err(&format!("databases.{name}{key}"), m))?;
            databases.insert(name, spec);
        }
        let http =
            crate::http::HttpPolicy::new(&fc.http.allow, &fc.http.deny).map_err(|m| {
                match m.split_once(": ") {
                    Some((at, rest)) => value_err(&format!("http.{at}"), rest.to_string()),
                    None => value_err("http", m),
                }
            })?;
        let notify = notify_settings(&root, fc.notify, &api.listen)
            .map_err(|(key, m)| value_err(&format!("notify{key}"), m))?;
        let password = fc
            .history
            .password
            .as_deref()
            .map(expand_env)
            .transpose()
            .map_err(|m| value_err("history.password", m))?;
        let lease = duration(
            "history.lease",
            fc.history.lease,
            LEASE_RANGE,
            crate::jobs::owner::LEASE,
        )?;
        let history_db = match fc.history.url {
            Some(url) => Some(
                PostgresTarget::with_lease(&url, password, lease)
                    .map_err(|m| value_err("history.url", m))?
                    .with_tls(
                        fc.history.sslmode.as_deref(),
                        fc.history.ca_file.as_deref().map(|f| root.join(f)),
                    )
                    .map_err(|(key, m)| value_err(key, m))?,
            ),
            None if password.is_some() => {
                return Err(value_err(
                    "history.password",
                    "a password without [history] url; set url = \"postgres://…\" too".into(),
                ));
            }
            None => None,
        };
        Ok(Config {
            http,
            notify,
            api,
            daemon,
            retention,
            file,
            scripts_dir: resolve(fc.paths.scripts, "scripts"),
            plugins_dir: resolve(fc.paths.plugins, "plugins"),
            inbox_dir,
            data_dir,
            history_path,
            limits,
            secrets,
            storage,
            redis,
            databases,
            root,
            history_db,
        })
    }

    /// Shows `path` relative to the project root when it lies below it, for messages and
    /// chunk names (`scripts/hello.lua` rather than an absolute path).
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Validates a `[stores.NAME]` section; errors carry the key suffix (`.url`) and a message.
fn store_spec(root: &Path, name: &str, s: StoreSection) -> Result<StoreSpec, (String, String)> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err((
            String::new(),
            "store names may use letters, digits, `_` and `-` only".into(),
        ));
    }
    let url = StoreUrl::parse(&s.url, root).map_err(|m| (".url".to_string(), m))?;
    let env = |key: &str, v: Option<String>| -> Result<Option<String>, (String, String)> {
        v.map(|v| expand_env(&v).map_err(|m| (format!(".{key}"), m)))
            .transpose()
    };
    let s3 = S3Options {
        endpoint: env("endpoint", s.endpoint)?,
        region: env("region", s.region)?,
        access_key_id: env("access_key_id", s.access_key_id)?.map(Secret::new),
        secret_access_key: env("secret_access_key", s.secret_access_key)?.map(Secret::new),
        session_token: env("session_token", s.session_token)?.map(Secret::new),
        allow_http: s.allow_http,
        path_style: s.path_style,
    };
    s3.validate(&url).map_err(|m| (String::new(), m))?;
    Ok(StoreSpec {
        name: Some(name.to_string()),
        url,
        s3,
    })
}

/// Validates a `[redis.NAME]` section; errors carry the key suffix (`.url`) and a message.
fn redis_spec(
    root: &Path,
    name: &str,
    s: RedisSection,
) -> Result<(String, RedisOptions), (String, String)> {
    if name.is_empty()
        || name.contains("://")
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err((
            String::new(),
            "Redis names may use letters, digits, `_` and `-` only".into(),
        ));
    }
    let env = |key: &str, v: Option<String>| -> Result<Option<String>, (String, String)> {
        v.map(|v| expand_env(&v).map_err(|m| (format!(".{key}"), m)))
            .transpose()
    };
    let duration = |key: &str,
                    v: Option<String>,
                    range: DurationRange,
                    default|
     -> Result<_, (String, String)> {
        v.map(|t| range.parse(&t).map_err(|m| (format!(".{key}"), m)))
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    if let Some(db) = s.db {
        REDIS_DB_RANGE
            .count(db)
            .map_err(|m| (".db".to_string(), m))?;
    }
    let d = RedisOptions::default();
    let url = env("url", Some(s.url))?.unwrap_or_default();
    let opts = RedisOptions {
        password: env("password", s.password)?,
        username: env("username", s.username)?,
        db: s.db,
        connect_timeout: duration(
            "connect_timeout",
            s.connect_timeout,
            REDIS_CONNECT_TIMEOUT_RANGE,
            d.connect_timeout,
        )?,
        timeout: duration("timeout", s.timeout, REDIS_TIMEOUT_RANGE, d.timeout)?,
        ca: match s.ca_file {
            Some(f) => {
                let path = root.join(&f);
                Some(std::fs::read(&path).map_err(|e| {
                    (
                        ".ca_file".to_string(),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?)
            }
            None => None,
        },
    };
    RedisTarget::new(&url, &opts).map_err(|e| {
        let m = e.to_string();
        (
            ".url".to_string(),
            m.strip_prefix("redis: ").unwrap_or(&m).to_string(),
        )
    })?;
    Ok((url, opts))
}

/// `[databases.NAME] connect_timeout` and `statement_timeout`.
pub const DATABASE_TIMEOUT_RANGE: DurationRange = DurationRange::new(Duration::from_millis(1), DAY);

/// Validates a `[databases.NAME]` section; errors carry the key suffix (`.url`) and a message
/// that never holds the password.
fn database_spec(
    root: &Path,
    name: &str,
    s: DatabaseSection,
) -> Result<crate::db::NamedDatabase, (String, String)> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err((
            String::new(),
            "database names may use letters, digits, `_` and `-` only".into(),
        ));
    }
    let env = |key: &str, v: Option<String>| -> Result<Option<String>, (String, String)> {
        v.map(|v| expand_env(&v).map_err(|m| (format!(".{key}"), m)))
            .transpose()
    };
    let duration = |key: &str, v: Option<String>| -> Result<_, (String, String)> {
        v.map(|t| {
            DATABASE_TIMEOUT_RANGE
                .parse(&t)
                .map_err(|m| (format!(".{key}"), m))
        })
        .transpose()
    };
    let url = env("url", Some(s.url))?.unwrap_or_default();
    let spec = crate::db::NamedDatabase {
        password: env("password", s.password)?,
        password_secret: s.password_secret,
        sslmode: s.sslmode,
        ca_file: s.ca_file.map(|f| root.join(f)),
        connect_timeout: duration("connect_timeout", s.connect_timeout)?,
        statement_timeout: duration("statement_timeout", s.statement_timeout)?,
        url,
    };
    if let Some(f) = &spec.ca_file
        && !f.is_file()
    {
        return Err((
            ".ca_file".into(),
            format!("cannot read {}: no such file", f.display()),
        ));
    }
    match spec.scheme() {
        "postgres" => {
            let opts = crate::db::postgres::PgOptions {
                sslmode: match &spec.sslmode {
                    Some(m) => Some(crate::db::postgres::SslMode::parse(m).ok_or_else(|| {
                        (
                            ".sslmode".to_string(),
                            format!(
                                "`{m}`: expected disable, prefer, require, verify-ca or verify-full"
                            ),
                        )
                    })?),
                    None => None,
                },
                ..Default::default()
            };
            crate::db::postgres::PgTarget::new(&spec.url, &opts).map_err(|e| {
                let m = e.to_string();
                (
                    ".url".to_string(),
                    m.strip_prefix("postgres: ").unwrap_or(&m).to_string(),
                )
            })?;
        }
        "mysql" => {
            if let Some(m) = &spec.sslmode {
                crate::db::mysql::SslMode::parse(m).map_err(|_| {
                    (
                        ".sslmode".to_string(),
                        format!(
                            "`{m}`: expected disabled, preferred, required, verify_ca or verify_identity"
                        ),
                    )
                })?;
            }
        }
        _ => {
            return Err((
                ".url".into(),
                "expected a postgres:// or mysql:// URL".into(),
            ));
        }
    }
    Ok(spec)
}

/// `[notify] backoff`.
pub const NOTIFY_BACKOFF_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(10), Duration::from_secs(3600));
/// `[notify] timeout`.
pub const NOTIFY_TIMEOUT_RANGE: DurationRange =
    DurationRange::new(Duration::from_millis(100), Duration::from_secs(600));
/// `[notify] attempts`.
pub const NOTIFY_ATTEMPTS_RANGE: CountRange = CountRange::new(1, 50);

/// Validates `[notify]`; errors carry the key suffix (`.webhook`) and a message.
fn notify_settings(
    root: &Path,
    s: NotifySection,
    listen: &str,
) -> Result<crate::notify::Settings, (String, String)> {
    use crate::notify::rules::{
        Delivery, Outcome, SecretUrl, Settings, Smtp, Tls, Webhook, parse_address, parse_mailbox,
    };
    fn at(key: &str) -> impl Fn(String) -> (String, String) + '_ {
        move |m| (format!(".{key}"), m)
    }
    let env = |key: &str, v: Option<String>| -> Result<Option<String>, (String, String)> {
        v.map(|v| expand_env(&v).map_err(at(key))).transpose()
    };
    let d = Delivery::default();
    let delivery = Delivery {
        attempts: match s.attempts {
            Some(n) => NOTIFY_ATTEMPTS_RANGE
                .count(u64::from(n))
                .map_err(at("attempts"))? as u32,
            None => d.attempts,
        },
        backoff: match s.backoff {
            Some(t) => NOTIFY_BACKOFF_RANGE.parse(&t).map_err(at("backoff"))?,
            None => d.backoff,
        },
        timeout: match s.timeout {
            Some(t) => NOTIFY_TIMEOUT_RANGE.parse(&t).map_err(at("timeout"))?,
            None => d.timeout,
        },
    };
    let on = match &s.on {
        Some(list) => Outcome::parse_list(list.iter().map(String::as_str)).map_err(at("on"))?,
        None => vec![Outcome::Failure],
    };
    let webhook = match env("webhook", s.webhook)? {
        Some(u) => Some(Webhook {
            url: SecretUrl::parse(&u).map_err(at("webhook"))?,
            secret: env("webhook_secret", s.webhook_secret)?.map(Secret::new),
        }),
        None if s.webhook_secret.is_some() => {
            return Err((
                ".webhook_secret".into(),
                "set without `webhook` (the URL it signs requests to)".into(),
            ));
        }
        None => None,
    };
    let slack = env("slack", s.slack)?
        .map(|u| SecretUrl::parse(&u).map_err(at("slack")))
        .transpose()?;
    let email = s
        .email
        .unwrap_or_default()
        .iter()
        .map(|a| parse_address(a).map_err(at("email")))
        .collect::<Result<Vec<_>, _>>()?;
    let smtp = match s.smtp {
        None if !email.is_empty() => {
            return Err((
                ".email".into(),
                "e-mail needs a mail server: add [notify.smtp] with `host` and `from`".into(),
            ));
        }
        None => None,
        Some(m) => {
            let tls = match m.tls.as_deref() {
                None => Tls::Starttls,
                Some(t) => Tls::NAMES
                    .iter()
                    .find(|(n, _)| *n == t)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| {
                        (
                            ".smtp.tls".to_string(),
                            format!("expected one of \"starttls\", \"tls\", \"none\", got {t:?}"),
                        )
                    })?,
            };
            let host = env("smtp.host", m.host)?
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    (
                        ".smtp.host".to_string(),
                        "missing; expected the mail server's host name".to_string(),
                    )
                })?;
            let from = m.from.ok_or_else(|| {
                (
                    ".smtp.from".to_string(),
                    "missing; expected the sender, like \"ferry <ferry@example.com>\"".to_string(),
                )
            })?;
            let username = env("smtp.username", m.username)?;
            let password = env("smtp.password", m.password)?.map(Secret::new);
            if username.is_some() != password.is_some() {
                return Err((
                    ".smtp.password".into(),
                    "`username` and `password` go together (both or neither)".into(),
                ));
            }
            if tls == Tls::None && m.ca_file.is_some() {
                return Err((
                    ".smtp.ca_file".into(),
                    "a CA certificate is for TLS connections; tls = \"none\" has none".into(),
                ));
            }
            Some(Smtp {
                port: m.port.unwrap_or(tls.default_port()),
                host,
                tls,
                username,
                password,
                from: parse_mailbox(&from).map_err(at("smtp.from"))?,
                ca: match m.ca_file {
                    Some(f) => {
                        let path = root.join(&f);
                        Some(std::fs::read(&path).map_err(|e| {
                            (
                                ".smtp.ca_file".to_string(),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?)
                    }
                    None => None,
                },
            })
        }
    };
    let public_url = match s.public_url {
        Some(u) => {
            let parsed = url::Url::parse(&u)
                .map_err(|e| (".public_url".to_string(), format!("not a valid URL ({e})")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err((
                    ".public_url".into(),
                    format!("expected an http:// or https:// URL with a host, got {u:?}"),
                ));
            }
            u.trim_end_matches('/').to_string()
        }
        None => format!("http://{listen}"),
    };
    Ok(Settings {
        on,
        webhook,
        slack,
        email,
        smtp,
        public_url,
        delivery,
    })
}

/// Expands a value of the form `${VAR}` from the environment; other values are returned as is.
pub fn expand_env(value: &str) -> Result<String, String> {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(var) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
        }
        None => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {

    /// A parse error names the line, column and key, never the value: a misspelt key's line may
    /// hold a secret.
    #[test]
    fn parse_errors_do_not_quote_the_line() {
        let text = "[notify]\nwebhok = \"https://hooks.example.com/T0KEN-s3cret\"\n";
        let e = Config::from_toml(text, None, PathBuf::from("/p"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(
            e.contains("line 2, column 1") && e.contains("webhok"),
            "{e}"
        );
        let e = Config::from_toml("[api]\ntoken = 5\n", None, PathBuf::from("/p"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column 9 (api.token)"), "{e}");
    }

    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::from_toml("", None, PathBuf::from("/p")).unwrap();
        assert_eq!(c.scripts_dir, PathBuf::from("/p/scripts"));
        assert_eq!(c.history_path, PathBuf::from("/p/data/ferry.db"));
        assert_eq!(c.limits.memory, 256 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = Config::from_toml("[limits]\ntimeot = \"1s\"\n", None, PathBuf::from("/p"))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("timeot"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn named_databases() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("FERRY_TEST_DB_PW_CFG", "db-pw-from-env") };
        let c = Config::from_toml(
            "[databases.main]\nurl = \"postgres://app:url-pw@10.0.0.5:5433/shop\"\npassword = \"${FERRY_TEST_DB_PW_CFG}\"\nstatement_timeout = \"2s\"\n\n[databases.my]\nurl = \"mysql://app@h/db\"\npassword_secret = \"MY_PW\"\n",
            None,
            PathBuf::from("/p"),
        )
        .unwrap();
        let main = c.databases.get("main").unwrap();
        assert_eq!(main.scheme(), "postgres");
        assert_eq!(main.password.as_deref(), Some("db-pw-from-env"));
        assert_eq!(main.statement_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.databases["my"].scheme(), "mysql");
        assert_eq!(c.databases["my"].password_secret.as_deref(), Some("MY_PW"));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("db-pw-from-env") && !debug.contains("url-pw"),
            "Debug shows no password: {debug}"
        );
        for (toml, want) in [
            (
                "[databases.x]\nurl = \"http://h\"\n",
                "databases.x.url: expected a postgres:// or mysql:// URL",
            ),
            (
                "[databases.x]\nurl = \"postgres://h/db\"\n",
                "databases.x.url: the URL names no user",
            ),
            (
                "[databases.x]\nurl = \"postgres://u@h/db\"\nsslmode = \"sometimes\"\n",
                "databases.x.sslmode",
            ),
            (
                "[databases.x]\nurl = \"postgres://u@h/db\"\npasword = \"p\"\n",
                "pasword",
            ),
            (
                "[databases.x]\nurl = \"postgres://u@h/db\"\nconnect_timeout = \"soon\"\n",
                "databases.x.connect_timeout",
            ),
            (
                "[databases.x]\nurl = \"postgres://u@h/db\"\nca_file = \"missing.pem\"\n",
                "databases.x.ca_file: cannot read /p/missing.pem",
            ),
            (
                "[databases.\"a b\"]\nurl = \"postgres://u@h/db\"\n",
                "database names",
            ),
        ] {
            let e = Config::from_toml(toml, None, PathBuf::from("/p"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{toml}: want {want:?} in {e}");
            assert!(!e.contains("url-pw"));
        }
    }

    #[test]
    fn named_redis_servers() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("FERRY_TEST_REDIS_PW_CFG", "pw-from-env") };
        let c = Config::from_toml(
            "[redis.cache]\nurl = \"redis://10.0.0.5:6380/2\"\npassword = \"${FERRY_TEST_REDIS_PW_CFG}\"\ntimeout = \"2s\"\n",
            None,
            PathBuf::from("/p"),
        )
        .unwrap();
        let (url, o) = &c.redis["cache"];
        assert_eq!(url, "redis://10.0.0.5:6380/2");
        assert_eq!(o.password.as_deref(), Some("pw-from-env"));
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert!(
            !format!("{c:?}").contains("pw-from-env"),
            "Debug shows no password"
        );
        for (toml, want) in [
            (
                "[redis.x]\nurl = \"http://h\"\n",
                "redis.x.url: unsupported URL scheme",
            ),
            (
                "[redis.x]\nurl = \"redis://h\"\npasword = \"p\"\n",
                "pasword",
            ),
            (
                "[redis.x]\nurl = \"redis://h\"\ntimeout = \"soon\"\n",
                "redis.x.timeout",
            ),
            (
                "[redis.x]\nurl = \"redis://h\"\npassword = \"${FERRY_TEST_UNSET_VAR}\"\n",
                "FERRY_TEST_UNSET_VAR is not set",
            ),
            ("[redis.\"a b\"]\nurl = \"redis://h\"\n", "Redis names"),
            (
                "[redis.x]\nurl = \"rediss://h\"\nca_file = \"missing.pem\"\n",
                "redis.x.ca_file: cannot read /p/missing.pem",
            ),
            (
                "[redis.x]\nurl = \"redis://h\"\nca_file = \"/etc/hostname\"\n",
                "a CA certificate is for TLS connections",
            ),
        ] {
            let e = Config::from_toml(toml, None, PathBuf::from("/p"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{toml}: want {want:?} in {e}");
        }
    }

    #[test]
    fn storage_defaults_and_named_stores() {
        // `cargo test` sets CARGO_MANIFEST_DIR for the test process: an environment variable
        // that exists without the test having to set one.
        let from_env = "secret-from-the-environment-0451";
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("FERRY_TEST_STORE_SECRET_CFG", from_env) };
        let c = Config::from_toml(
            r#"
[storage]
allow = ["data", "/srv/exports"]

[stores.backup]
url = "s3://bucket/nightly"
endpoint = "http://127.0.0.1:9000"
access_key_id = "AKID"
secret_access_key = "${FERRY_TEST_STORE_SECRET_CFG}"
path-style = true

[stores.exports]
url = "data/exports"
"#,
            None,
            PathBuf::from("/p"),
        )
        .unwrap();
        assert_eq!(
            c.storage.allowed,
            vec![PathBuf::from("/p/data"), PathBuf::from("/srv/exports")]
        );
        let backup = &c.storage.stores["backup"];
        assert_eq!(backup.url.to_url_string(), "s3://bucket/nightly");
        assert_eq!(backup.s3.path_style, Some(true));
        assert!(c.storage.secret_values().contains(&from_env.to_string()));
        // Debug output (which may end up in a log) never shows a credential.
        assert!(!format!("{c:?}").contains(from_env));
        assert!(!format!("{c:?}").contains("AKID"));
        assert_eq!(
            c.storage.stores["exports"].url,
            StoreUrl::Local("/p/data/exports".into())
        );
        let d = Config::from_toml("", None, PathBuf::from("/p")).unwrap();
        assert_eq!(
            d.storage.allowed,
            vec![PathBuf::from("/p/data"), PathBuf::from("/p/inbox")]
        );
        assert!(
            d.storage
                .protected
                .contains(&PathBuf::from("/p/data/ferry.db-wal"))
        );
    }

    #[test]
    fn malformed_store_sections_name_the_key() {
        let cases = [
            ("[stores.x]\nendpoint = \"http://h\"\n", "url"),
            (
                "[stores.x]\nurl = \"s3://b\"\nendpont = \"http://h\"\n",
                "endpont",
            ),
            ("[stores.x]\nurl = \"gs://b\"\n", "stores.x.url"),
            ("[stores.x]\nurl = \"../outside\"\n", "stores.x.url"),
            (
                "[stores.x]\nurl = \"s3://b\"\naccess_key_id = \"a\"\n",
                "secret_access_key",
            ),
            (
                "[stores.x]\nurl = \"data/x\"\nregion = \"eu\"\n",
                "s3:// stores only",
            ),
            (
                "[stores.x]\nurl = \"s3://b\"\nsecret_access_key = \"${FERRY_TEST_UNSET_VAR}\"\naccess_key_id = \"a\"\n",
                "FERRY_TEST_UNSET_VAR",
            ),
            (
                "[stores.x]\nurl = \"s3://b\"\nendpoint = \"http://u:p@h\"\n",
                "credentials do not belong",
            ),
            ("[stores.\"a b\"]\nurl = \"s3://b\"\n", "store names"),
            ("[storage]\nallow = \"data\"\n", "allow"),
            ("[storage]\nalow = [\"data\"]\n", "alow"),
        ];
        for (text, want) in cases {
            let e = Config::from_toml(text, None, PathBuf::from("/p")).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    /// Every duration, size and count of `ferry.toml` refuses extreme values with an error
    /// naming the key and the allowed range; none panics.
    #[test]
    fn extreme_values_are_refused_with_key_and_range() {
        let durations = [
            ("limits", "timeout"),
            ("limits", "kill_grace"),
            ("daemon", "shutdown_grace"),
            ("daemon", "catchup_window"),
            ("daemon", "retry_max_delay"),
            ("redis.x", "connect_timeout"),
            ("redis.x", "timeout"),
        ];
        let sizes = [
            ("limits", "memory"),
            ("limits", "worker_headroom"),
            ("api", "max_upload"),
        ];
        let counts = [
            ("daemon", "concurrency"),
            ("daemon", "warm_workers"),
            ("daemon", "catchup_max"),
            ("retention", "days"),
            ("retention", "runs_per_job"),
            ("redis.x", "db"),
        ];
        let table = |section: &str, line: String| {
            let url = if section.starts_with("redis") {
                "url = \"redis://127.0.0.1\"\n"
            } else {
                ""
            };
            format!("[{section}]\n{url}{line}\n")
        };
        let check = |text: String, key: &str| {
            let e = match Config::from_toml(&text, None, PathBuf::from("/p")) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(key), "{text}: the error names {key}: {e}");
            assert!(
                e.contains("must be") || e.contains("invalid value") || e.contains("invalid type"),
                "{text}: the error says what is allowed: {e}"
            );
        };
        let duration_values: &[&str] = &[
            "\"99999999999999999999d\"",
            "\"18446744073709551615d\"",
            "\"367d\"",
        ];
        let size_values: &[&str] = &[
            "\"99999999999999999999TiB\"",
            "\"18446744073709551615\"",
            "\"2TiB\"",
        ];
        let count_values: &[&str] = &[
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "4294967296",
        ];
        for (keys, values) in [
            (&durations[..], duration_values),
            (&sizes[..], size_values),
            (&counts[..], count_values),
        ] {
            for (section, key) in keys {
                for v in values {
                    check(table(section, format!("{key} = {v}")), key);
                }
            }
        }
        for (text, key) in [
            ("[limits]\ntimeout = \"0s\"\n", "limits.timeout"),
            ("[limits]\nmemory = \"0\"\n", "limits.memory"),
            ("[daemon]\nconcurrency = 0\n", "daemon.concurrency"),
            ("[daemon]\nwarm_workers = 65\n", "daemon.warm_workers"),
            ("[retention]\ndays = 0\n", "retention.days"),
            ("[api]\nmax_upload = \"0\"\n", "api.max_upload"),
            (
                "[daemon]\nretry_max_delay = \"0s\"\n",
                "daemon.retry_max_delay",
            ),
        ] {
            let e = Config::from_toml(text, None, PathBuf::from("/p"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains("must be"), "{text}: {e}");
        }
        let c = Config::from_toml("", None, PathBuf::from("/p")).unwrap();
        assert_eq!(c.daemon.retry_max_delay, DEFAULT_RETRY_MAX_DELAY);
    }

    #[test]
    fn notify_section_is_validated_and_its_secrets_hidden() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("FERRY_TEST_NOTIFY_PW_CFG", "smtp-pw-from-env") };
        let c = Config::from_toml(
            r#"
[api]
listen = "0.0.0.0:9000"
token = "0123456789abcdef0123"
[notify]
on = ["failure", "recovered"]
webhook = "https://hooks.example.com/T/secret-token-1"
webhook_secret = "hook-key-2"
slack = "https://hooks.slack.com/services/secret-token-3"
email = ["ops@example.com"]
[notify.smtp]
host = "smtp.example.com"
tls = "tls"
username = "ferry"
password = "${FERRY_TEST_NOTIFY_PW_CFG}"
from = "ferry <ferry@example.com>"
"#,
            None,
            PathBuf::from("/p"),
        )
        .unwrap();
        let n = &c.notify;
        assert_eq!(n.public_url, "http://0.0.0.0:9000");
        assert_eq!(n.smtp.as_ref().map(|s| s.port), Some(465));
        assert_eq!(n.plan(None).channels.len(), 3);
        let shown = format!("{c:?}");
        for secret in [
            "secret-token-1",
            "hook-key-2",
            "secret-token-3",
            "smtp-pw-from-env",
        ] {
            assert!(!shown.contains(secret), "{secret} in Debug output");
        }
        let d = Config::from_toml("", None, PathBuf::from("/p")).unwrap();
        assert!(
            d.notify.plan(None).channels.is_empty(),
            "nothing is sent by default"
        );
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = Config::from_toml("[limits]\ntimeout = \"soon\"\n", None, PathBuf::from("/p"))
            .unwrap_err();
        assert!(e.to_string().contains("limits.timeout"), "{e}");
    }
}
