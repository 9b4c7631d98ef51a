//! ferry runs data jobs written in Lua.
//!
//! A job script in `scripts/` says *what* to move; the host gives it the primitives that move
//! the bytes. Every run is recorded in SQLite and executes in a worker process.
//!
//! # Layout
//! - [`config`]: `ferry.toml` and the zero-config defaults, validated into [`config::Config`].
//! - [`jobs`]: job specs parsed from scripts (their top level evaluated in a `ferry eval-spec`
//!   process of its own; `jobs/locate.rs` finds the line of a spec key for errors), params,
//!   triggers, secrets, retry timing (`jobs/cron_error.rs` says which cron field is wrong and
//!   its range); the executor that runs a job in a `ferry worker` process and the worker loop
//!   itself; scripts written by request (`jobs/scripts.rs`: name rule, validation, atomic
//!   writes), version hashes (`jobs/versions.rs`) and scripts generated from a template with
//!   the options as escaped Lua literals (`jobs/templates.rs`). The dispatcher
//!   (`jobs/dispatcher.rs`) runs its loop on a thread of its own, woken by a `jobs/signal.rs`;
//!   every decision about time (cron, catch-up, retries, retention) reads `jobs/clock.rs`'s
//!   `Clock`, which unit tests set by hand (`jobs/testkit.rs`: a real history and dispatcher
//!   at a fixed instant).
//! - [`lua`]: the Lua host: sandboxed VM, limits, `require`, the job context and bindings. Its
//!   API is described for editors in `lua/types/ferry.lua` (LuaCATS), which `ferry init`/`new`
//!   write into projects (`cli/editor.rs`).
//! - [`history`]: the run history (runs, logs, artifacts, job state, script versions, API tokens
//!   by their hash, the audit log) in SQLite, or in PostgreSQL for several hosts sharing one
//!   queue (`history/pg.rs`: batch claims with `SKIP LOCKED`, `LISTEN/NOTIFY` wake-ups, leases on
//!   the database's clock); callers hold a `HistoryHandle` and never name a backend. One
//!   conformance suite for both (`history/conformance.rs`); `history/copy.rs` copies a SQLite
//!   history into PostgreSQL (`ferry history migrate`). A run's record is typed: why it started
//!   is a [`history::Trigger`] (`history/trigger.rs`, stored as the JSON every version wrote),
//!   its error code an [`error_code::ErrorCode`], a watched file's state a
//!   [`history::FileState`]; what another version wrote and this one does not know reads back
//!   as it was, never as an error.
//! - [`storage`]: stores (local folders, S3, memory; `storage/store.rs`, opened by name or URL
//!   in `storage/registry.rs`) with streaming readers and writers (`storage/stream.rs`), atomic
//!   commits, copies across stores (`storage/copy.rs`), bulk copies made durable per batch
//!   (`copy_files` in `storage/bulk.rs`, what backups use), recovery of writes a dead process
//!   left behind (`storage/recovery.rs`), and the one confinement check of every path a script
//!   or job spec names (`confine_path`, `storage/confine.rs`).
//! - [`formats`]: the row model (ordered columns, typed values), row sources and sinks for CSV,
//!   JSON and NDJSON (`formats/json/`), XLSX, SQL (`formats/sql/`: `INSERT` writers per dialect,
//!   and `split.rs`, which cuts scripts into statements by each database's lexical rules) and
//!   Redis RDB files, the column projection
//!   every format shares (`formats/projection.rs`: `columns`, `exclude`, renames, timestamps),
//!   `pipe`, and zip archives; plain Rust on `std::io`.
//! - [`db`]: SQLite for scripts (`db/sqlite/`: queries as row sources, tables as row sinks,
//!   `.sql` scripts, the authorizer that confines `ATTACH`),
//!   PostgreSQL (`db/postgres/`: tokio-postgres on a runtime of the connection's own in
//!   `conn.rs`, cursor sources, COPY sinks, the COPY-to-CSV bulk path with the client-side
//!   rewrite of `csv_pass.rs`, rustls TLS, server-side cancel), MySQL/MariaDB (`db/mysql/`: streaming queries, `LOAD DATA
//!   LOCAL` fed from a row source, multi-row `INSERT` sinks, `KILL QUERY` on cancel), the named
//!   server databases of `ferry.toml` ([`db::NamedDatabase`]) and Redis (commands, pipelines,
//!   SCAN/DUMP source, RESTORE sink, SYNC snapshots).
//! - [`http`]: outbound HTTP for scripts (`ferry.http`): the `[http]` host policy, checked on
//!   the URL, on every resolved address and on every redirect; the client with timeouts,
//!   retries and streamed bodies.
//! - [`daemon`]: `ferry serve`: wires the registry (hot reload), the triggers (cron, watched
//!   folders), the dispatcher and retention; crash recovery; graceful shutdown. The start-up
//!   runs on blocking threads (`daemon/start.rs`), and the trigger loop (`daemon/triggers.rs`)
//!   and the dispatcher each on a thread of their own, so no history, file or folder call runs
//!   on the async runtime; with a shared
//!   history, the check that the data folder is the one every host uses (`daemon/shared.rs`).
//! - [`api`]: the HTTP API of the daemon (axum): routes, auth with named tokens and scopes (the
//!   one table of every route's scope and audited action in `api/auth.rs`), the JSON it
//!   answers with (`api/wire/`: types of its own built from the history's records, each with
//!   its schema) and the OpenAPI document generated from them and the handlers (`api/doc.rs`),
//!   uploads, downloads, tokens and the audit log over HTTP (`api/tokens.rs`),
//!   job scripts written, checked and deleted remotely with their versions (`api/scripts.rs`),
//!   jobs created from a template in one call (`api/templates.rs`);
//!   the web UI (`api/ui/`: plain HTML/CSS/JS modules embedded with `include_str!`, served at
//!   `/`, sign-in by HttpOnly cookie with CSRF checks in `api/ui/session.rs`).
//! - [`notify`]: notifications of run ends (webhook, Slack, e-mail over SMTP): rules, payloads,
//!   sending, and the daemon's notifier (a listener on the event bus with a persisted,
//!   retried delivery queue). `notify::rules` is plain data that `config` and job specs
//!   build; the rest sits beside the daemon, above `jobs` and `history`.
//! - [`cli`]: the command line (and the client of a running daemon's API); tables sized to
//!   their content (`cli/table.rs`), times in the local zone and UTC (`cli/when.rs`); the live
//!   hosts of a history and the copy of a SQLite history into PostgreSQL (`cli/hosts.rs`).
//! - [`units`]: durations and sizes as people write them, and the ranges options accept.
//! - [`error_code`]: the stable codes of a run's error, shared by `lua` (which classifies a
//!   failure) and `history` (which stores it) without either knowing the other.
//! - [`cancel`]: cooperative cancellation of long host operations (row loops and byte streams
//!   ask the calling thread's scope, which a run installs).
//! - [`process`]: facts about local processes from `/proc` (alive, start time, ferry worker).
//! - [`redact`]: credentials inside run params, masked for display and hidden from run output.
//!
//! # How a run flows, from trigger to history
//! A trigger asks the [`jobs::dispatcher::Dispatcher`] for a run: the cron and watched-folder
//! triggers from the daemon's trigger loop (`daemon/triggers.rs`, deciding with `jobs/cron.rs`
//! and `jobs/watch.rs`), the API's handlers (`api/`, which the CLI's `ferry trigger` and the UI
//! call), an ended run's downstream jobs (`jobs/chain.rs`) and retries. `submit` checks the
//! params and the overlap policy and records the run as `queued` ([`history::NewRun`], with
//! its [`history::Trigger`]). The dispatcher's loop (its own thread) claims the runs that are
//! due and hands each to the executor (`jobs/executor.rs`), which takes a warm
//! `WorkerProcess` (a `ferry worker` child) and sends it the run over stdin
//! (`jobs/protocol.rs`). The worker (`jobs/worker.rs`) marks the run `running`, builds a fresh
//! sandboxed Lua VM (`lua/sandbox.rs`), runs the script with a [`lua::RunHost`] that writes its
//! logs, progress and artifacts to the history, and closes the run with its summary or error.
//! If the worker dies or is killed, the executor closes the run instead. The dispatcher then
//! queues a retry when one is due (`History::create_retry`, which takes a watched file along),
//! or moves the file to `archive/`/`failed/`, and publishes the end on the event bus
//! (`jobs/events.rs`), which the API's `/events`, the UI and the notifier (`notify/`) follow.
//! `ferry run FILE` takes the same path without a daemon: a run recorded, one worker, the end.
//!
//! # Invariants
//! - Only `lua/` imports mlua; only `history/` holds SQL for the run history; only `api/`
//!   serves HTTP; outbound HTTP goes through `http/` (scripts) and `notify/` (webhooks),
//!   the CLI's client and object_store aside.
//! - The web UI's pages hold no data and no secret: they read everything through the JSON API,
//!   and the token reaches the browser only as an HttpOnly cookie.
//! - A notification's secrets (webhook and Slack URLs, keys, SMTP credentials) live only in
//!   memory; the history and every output show a target as `scheme://host/…`.
//! - No history, file-system or store call runs on a tokio runtime thread: the daemon's loops
//!   have threads of their own, and API handlers go through `spawn_blocking`.
//! - Arrows point down: `cli` → `api` → `daemon` → `jobs` → `lua` → `storage`/`formats`/`db`
//!   (`layering_tests.rs` fails on a module that names one it must not know, and on mlua,
//!   rusqlite, object_store or axum used outside their module).
//! - `storage/` knows nothing of Lua or jobs; only `storage/` talks to object_store.
//! - Nothing half-written is visible under a final name: store writers commit atomically and
//!   discard on every other path.
//! - `lua/` knows nothing of the history or the daemon: a run talks to its host through
//!   [`lua::RunHost`].
//! - A run's history row exists before its script starts and is closed on every path: by the
//!   worker when the script ends, by the executor when the worker dies or is killed.
//! - `formats/` and `db/` know nothing of Lua or jobs; `db/` builds on the row model of
//!   `formats/`, never the reverse. Rows cross into Lua only where a script asks for them.
//! - A secret's value never reaches the history or any output: the worker redacts logs, errors
//!   and summaries before they are written.
//! - Lua runs only in child processes (`ferry worker` for runs, `ferry eval-spec` for loading a
//!   script): no script can hang or crash the CLI or the daemon.
//! - Every file path a script or job spec names goes through `storage::confine_path` (or its
//!   `Confinement`), SQLite's `ATTACH`/`VACUUM INTO` included.
//! - An artifact belongs to its run: `ctx.artifact` copies the file into the run's folder of the
//!   artifact area ([`storage::artifact_area`], protected from scripts), and downloads serve that
//!   copy; the copies go when their run is deleted.
//! - Options are checked by one mechanism (`lua/schema.rs`: host options, read by
//!   `lua/options.rs`, and plugin schemas share its vocabularies), and errors reach scripts as values with a stable kind
//!   (`lua/host_error.rs`).
//! - Every function the host registers is annotated in `lua/types/ferry.lua` and listed in
//!   docs/lua-api.md, and nothing else is (`lua/surface_tests.rs`).

pub mod api;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub mod error_code;
pub mod formats;
pub mod history;
pub mod http;
pub mod jobs;
pub mod lua;
pub mod notify;
pub mod process;
pub mod redact;
pub mod storage;
pub mod sync;
pub mod units;

#[cfg(test)]
mod layering_tests;
