//! Versioned schema migrations of the history database, applied in order at open time.
//! `PRAGMA user_version` holds the number of migrations applied. Never edit a released
//! migration: add a new one.

/// The migrations, oldest first.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, logs, artifacts, job state.
    r#"
    CREATE TABLE runs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        job              TEXT NOT NULL,
        trigger_kind     TEXT NOT NULL,
        trigger          TEXT NOT NULL,
        params           TEXT NOT NULL DEFAULT '{}',
        state            TEXT NOT NULL,
        attempt          INTEGER NOT NULL DEFAULT 1,
        error_code       TEXT,
        error_message    TEXT,
        error_traceback  TEXT,
        summary          TEXT,
        progress_done    INTEGER,
        progress_total   INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        worker_pid       INTEGER,
        queued_at        TEXT NOT NULL,
        started_at       TEXT,
        finished_at      TEXT
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_state ON runs (state, id);
    CREATE INDEX runs_by_queued ON runs (queued_at);
    CREATE TABLE logs (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        at      TEXT NOT NULL,
        level   TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX logs_by_run ON logs (run_id, seq);
    CREATE TABLE artifacts (
        run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        store      TEXT NOT NULL,
        path       TEXT NOT NULL,
        size       INTEGER,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE job_state (
        job        TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (job, key)
    );
    "#,
    // 2: the daemon: delayed runs (retries, `at`), retry chains, watched files, cron bookkeeping.
    r#"
    ALTER TABLE runs ADD COLUMN not_before TEXT;
    ALTER TABLE runs ADD COLUMN retry_of INTEGER;
    ALTER TABLE runs ADD COLUMN retried_by INTEGER;
    CREATE INDEX runs_queued ON runs (state, not_before) WHERE state = 'queued';
    CREATE TABLE files (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        job             TEXT NOT NULL,
        name            TEXT NOT NULL,
        processing_path TEXT NOT NULL,
        size            INTEGER,
        run_id          INTEGER,
        state           TEXT NOT NULL,
        claimed_at      TEXT NOT NULL,
        finished_at     TEXT
    );
    CREATE INDEX files_by_run ON files (run_id);
    CREATE INDEX files_by_path ON files (processing_path);
    CREATE TABLE schedules (
        job       TEXT PRIMARY KEY,
        last_fire TEXT NOT NULL
    );
    "#,
    // 3: owners: every open run names the process that supervises it (`host:pid:start`) and a
    // lease it renews, so recovery touches only runs whose owner is gone; what a run asked to
    // delete should it not succeed; watched files by state and where they went (for a rerun);
    // paused jobs; runs whose downstream jobs (`after`) are still to be started (runs from before
    // count as done).
    r#"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_until TEXT;
    CREATE INDEX runs_open ON runs (state, owner) WHERE state IN ('queued', 'running');
    CREATE INDEX files_by_state ON files (state);
    CREATE TABLE run_discards (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  INTEGER NOT NULL,
        store   TEXT NOT NULL,
        prefix  TEXT NOT NULL
    );
    CREATE INDEX run_discards_by_run ON run_discards (run_id);
    ALTER TABLE files ADD COLUMN final_path TEXT;
    CREATE TABLE paused_jobs (
        job   TEXT PRIMARY KEY,
        since TEXT NOT NULL,
        by    TEXT
    );
    ALTER TABLE runs ADD COLUMN chained INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX runs_unchained ON runs (id) WHERE chained = 0;
    "#,
    // 4: artifacts belong to their run: the run's own copy (path in the artifacts folder) and
    // the SHA-256 of what was recorded.
    r#"
    ALTER TABLE artifacts ADD COLUMN sha256 TEXT;
    ALTER TABLE artifacts ADD COLUMN copy TEXT;
    "#,
    // 5: notifications of run ends: one row per run and channel, with its delivery attempts
    // (pending ones are picked up again after a restart). Targets are recorded redacted.
    r#"
    CREATE TABLE notifications (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        job         TEXT NOT NULL,
        event       TEXT NOT NULL,
        channel     TEXT NOT NULL,
        target      TEXT NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        reason      TEXT,
        created_at  TEXT NOT NULL,
        next_at     TEXT,
        last_at     TEXT,
        UNIQUE (run_id, channel, target)
    );
    CREATE INDEX notifications_pending ON notifications (next_at) WHERE state = 'pending';
    "#,
    // 6: the overview's "failures of the last 24 hours" (and any list by state and time) read
    // from an index alone instead of one row per run.
    r#"
    CREATE INDEX runs_by_state_queued ON runs (state, queued_at);
    "#,
    // 7: every version of a job script that loaded (content hash, when, from the API or a file
    // edit, the source), and the version each run executed.
    r#"
    CREATE TABLE script_versions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        job         TEXT NOT NULL,
        hash        TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        origin      TEXT NOT NULL,
        source      TEXT NOT NULL
    );
    CREATE INDEX script_versions_by_job ON script_versions (job, id);
    CREATE INDEX script_versions_by_hash ON script_versions (job, hash);
    ALTER TABLE runs ADD COLUMN script_version TEXT;
    "#,
    // 8: named API tokens (only the SHA-256 of each token is kept) with their scope, and the
    // audit log of what API clients changed (who, when, from where, what); the token name a
    // script version was written with.
    r#"
    CREATE TABLE api_tokens (
        name        TEXT PRIMARY KEY,
        hash        TEXT NOT NULL UNIQUE,
        scope       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        last_used   TEXT
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        actor   TEXT NOT NULL,
        source  TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        status  INTEGER NOT NULL
    );
    ALTER TABLE script_versions ADD COLUMN written_by TEXT;
    "#,
    // 9: several processes on one history: each cron occurrence fires once (one row per job
    // and scheduled time), each watched file is claimed once (one row per job and file), the
    // live daemons with their load (`ferry hosts`), and the id of the history that a shared
    // data folder is checked against.
    r#"
    CREATE TABLE cron_fires (
        job          TEXT NOT NULL,
        scheduled_at TEXT NOT NULL,
        fired_by     TEXT NOT NULL,
        PRIMARY KEY (job, scheduled_at)
    );
    CREATE TABLE file_claims (
        job        TEXT NOT NULL,
        key        TEXT NOT NULL,
        claimed_by TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (job, key)
    );
    CREATE TABLE hosts (
        owner      TEXT PRIMARY KEY,
        host       TEXT NOT NULL,
        listen     TEXT NOT NULL,
        started_at TEXT NOT NULL,
        seen_at    TEXT NOT NULL,
        running    INTEGER NOT NULL DEFAULT 0,
        capacity   INTEGER NOT NULL DEFAULT 0,
        load       REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE cluster (
        id   TEXT PRIMARY KEY,
        made TEXT NOT NULL
    );
    "#,
];
