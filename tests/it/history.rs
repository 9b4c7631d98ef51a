//! The history backends: one conformance suite run against SQLite and a real PostgreSQL server;
//! claims from several hosts at once; migrations applied by several hosts at once; `ferry
//! history migrate` keeping every record; `[history]` settings that are refused.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use common::Project;
use common::postgres::PgServer;
use ferry::config::PostgresTarget;
use ferry::history::{
    ErrorCode, FileState, History, HistoryHandle, NewRun, PostgresHistory, SqliteHistory, Trigger,
};
use serde_json::{Value, json};

fn target(pg: &PgServer, db: &str) -> PostgresTarget {
    PostgresTarget::new(&pg.url_db(db), Some(PgServer::PASSWORD.into())).unwrap()
}

#[test]
fn sqlite_and_postgres_pass_the_same_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    ferry::history::conformance::run_all(&mut |name| -> HistoryHandle {
        Arc::new(SqliteHistory::open(&dir.path().join(format!("{name}.db"))).unwrap())
    });
    let pg = PgServer::start();
    ferry::history::conformance::run_all(&mut |name| -> HistoryHandle {
        let db = format!("c_{name}");
        pg.create_database(&db);
        Arc::new(PostgresHistory::open(&target(&pg, &db)).unwrap())
    });
}

fn new_run(job: &str) -> NewRun {
    NewRun {
        job: job.into(),
        trigger: Trigger::Api,
        params: serde_json::json!({}),
        attempt: 1,
        not_before: None,
        retry_of: None,
        owner: None,
    }
}

/// Rows as every version so far has written them (trigger JSON, error code), and one this
/// version does not know: (trigger, error code, the kind read back, the code read back).
fn rows_written_before() -> Vec<(Value, &'static str, &'static str, ErrorCode)> {
    vec![
        (json!({"kind": "manual"}), "run", "manual", ErrorCode::Run),
        (
            json!({"kind": "cron", "scheduled_at": "2026-03-01T02:00:00.000Z", "missed": 2}),
            "timeout",
            "cron",
            ErrorCode::Timeout,
        ),
        (
            json!({"kind": "file", "file": "/in/.ferry/processing/a.csv"}),
            "load",
            "file",
            ErrorCode::Load,
        ),
        (
            json!({"kind": "retry", "of": 1, "attempt": 2, "file": "/in/a.csv"}),
            "crashed",
            "retry",
            ErrorCode::Crashed,
        ),
        (
            json!({"kind": "job", "of": 2, "job": "up", "state": "succeeded", "summary": {"n": 1}}),
            "interrupted",
            "job",
            ErrorCode::Interrupted,
        ),
        (
            json!({"kind": "webhook", "from": "elsewhere"}),
            "worker_lost",
            "webhook",
            ErrorCode::Other("worker_lost".into()),
        ),
    ]
}

/// Reads back the rows of [`rows_written_before`] (inserted as ids 1, 2, ...) and checks they
/// are typed and serialise to the JSON they were written as.
fn check_rows_written_before(h: &dyn History) {
    for (i, (trigger, _, kind, code)) in rows_written_before().into_iter().enumerate() {
        let r = h.get_run(i as i64 + 1).unwrap();
        assert_eq!(r.trigger_kind(), kind);
        assert_eq!(r.trigger.to_json(), trigger, "run {}", r.id);
        assert_eq!(
            matches!(r.trigger, Trigger::Other(_)),
            kind == "webhook",
            "{:?}",
            r.trigger
        );
        assert_eq!(r.error.unwrap().code, code);
        let shown =
            serde_json::to_value(ferry::api::wire::RunView::from(&h.get_run(r.id).unwrap()));
        assert_eq!(shown.unwrap()["trigger"], trigger);
    }
    // A watched file's state: a known one, and one this version does not know.
    let state = |run| h.file_for_run(run).unwrap().unwrap().state;
    assert_eq!(state(1), FileState::Archived);
    assert_eq!(state(2), FileState::Unknown);
}

/// Files of runs 1 and 2 as [`check_rows_written_before`] expects them.
const FILES_WRITTEN_BEFORE: &str = "INSERT INTO files (job, name, processing_path, run_id, \
    state, claimed_at) VALUES ('old', 'a.csv', '/in/.ferry/processing/a.csv', 1, 'archived', \
    '2026-01-02T03:04:05.000Z'), ('old', 'b.csv', '/in/.ferry/processing/b.csv', 2, \
    'quarantined', '2026-01-02T03:04:05.000Z')";

#[test]
fn runs_written_before_the_typed_model_read_back_unchanged() {
    let insert = |trigger: &Value, code: &str| {
        format!(
            "INSERT INTO runs (job, trigger_kind, trigger, params, state, attempt, queued_at, \
             finished_at, error_code, error_message) VALUES ('old', '{}', '{trigger}', '{{}}', \
             'failed', 1, '2026-01-02T03:04:05.000Z', '2026-01-02T03:04:06.000Z', '{code}', 'boom')",
            trigger["kind"].as_str().unwrap()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    drop(SqliteHistory::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (trigger, code, ..) in rows_written_before() {
        conn.execute(&insert(&trigger, code), []).unwrap();
    }
    conn.execute(FILES_WRITTEN_BEFORE, []).unwrap();
    drop(conn);
    check_rows_written_before(&SqliteHistory::open(&path).unwrap());
    let pg = PgServer::start();
    pg.create_database("old");
    let h = PostgresHistory::open(&target(&pg, "old")).unwrap();
    for (trigger, code, ..) in rows_written_before() {
        pg.psql_db("old", &insert(&trigger, code));
    }
    pg.psql_db("old", FILES_WRITTEN_BEFORE);
    check_rows_written_before(&h);
}

#[test]
fn a_cron_run_that_cannot_be_recorded_leaves_its_occurrence_claimable() {
    let pg = PgServer::start();
    pg.create_database("cron");
    let h = PostgresHistory::open(&target(&pg, "cron")).unwrap();
    let at = chrono::Utc::now();
    // The host "dies" between the claim and the run: PostgreSQL refuses a NUL in text, so the
    // run's insert fails after the claim's.
    let broken = NewRun {
        trigger: Trigger::Other(serde_json::json!({"kind": "cron\0"})),
        ..new_run("a")
    };
    assert!(h.create_cron_run(&broken, at, "h1").is_err());
    assert!(
        h.create_cron_run(&new_run("a"), at, "h2")
            .unwrap()
            .is_some(),
        "the occurrence is still claimable"
    );
    assert_eq!(h.create_cron_run(&new_run("a"), at, "h1").unwrap(), None);
    assert_eq!(
        h.count_in_state(ferry::history::RunState::Queued).unwrap(),
        1
    );
}

#[test]
fn a_value_of_another_type_is_an_error_naming_table_and_column() {
    let pg = PgServer::start();
    pg.create_database("types");
    let h = PostgresHistory::open(&target(&pg, "types")).unwrap();
    let id = h.create_run(&new_run("a")).unwrap();
    // Someone changed the schema by hand: the column no longer holds what ferry reads.
    pg.psql_db(
        "types",
        "ALTER TABLE runs ALTER COLUMN attempt TYPE INTEGER",
    );
    let err = h.get_run(id).unwrap_err();
    assert!(
        matches!(
            &err,
            ferry::history::HistoryError::Column { table, column, .. }
                if table == "runs" && column == "attempt"
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("column attempt of table runs"),
        "{err}"
    );
}

#[test]
fn a_lost_connection_is_an_error_and_the_next_call_reconnects() {
    let pg = PgServer::start();
    pg.create_database("lost");
    let h = PostgresHistory::open(&target(&pg, "lost")).unwrap();
    let id = h.create_run(&new_run("a")).unwrap();
    // The server drops every connection of ferry's, as a restart does.
    pg.psql_db(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ferry'",
    );
    let first = h.get_run(id);
    if let Err(e) = &first {
        assert!(
            matches!(e, ferry::history::HistoryError::Postgres { .. }),
            "{e:?}"
        );
    }
    // At most the call that found the connection gone fails; the next one reconnects.
    assert_eq!(h.get_run(id).unwrap().id, id);
    assert!(h.create_run(&new_run("a")).unwrap() > id);
}

#[test]
fn the_history_speaks_tls_verified_against_ca_file() {
    let pg = PgServer::start_tls();
    pg.create_database("tls");
    let ca = pg.ca_file.clone().unwrap();
    let tls_connections = || {
        pg.psql_db(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'ferry' AND s.ssl",
        )
        .trim()
        .to_string()
    };
    let verified = target(&pg, "tls")
        .with_tls(Some("verify-full"), Some(ca.clone()))
        .unwrap();
    let h = PostgresHistory::open(&verified).unwrap();
    let id = h.create_run(&new_run("a")).unwrap();
    assert_eq!(h.get_run(id).unwrap().id, id);
    assert_eq!(tls_connections(), "1");
    drop(h);
    // Without the CA the server's certificate is not trusted: an error, not a plain fallback.
    let untrusted = target(&pg, "tls").with_tls(Some("require"), None).unwrap();
    let err = PostgresHistory::open(&untrusted).err().expect("refused");
    assert!(!err.to_string().contains(PgServer::PASSWORD), "{err}");
    let plain = target(&pg, "tls").with_tls(Some("disable"), None).unwrap();
    let h = PostgresHistory::open(&plain).unwrap();
    assert!(h.get_run(id).is_ok());
    assert_eq!(tls_connections(), "0");
}

#[test]
fn hosts_claiming_at_once_take_each_run_once_and_migrate_once() {
    let pg = PgServer::start();
    pg.create_database("claims");
    let t = target(&pg, "claims");
    // Four hosts open (and so migrate) a fresh database at the same moment.
    let hosts: Vec<PostgresHistory> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PostgresHistory::open(&t).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = HashSet::new();
    for _ in 0..400 {
        ids.insert(hosts[0].create_run(&new_run("j")).unwrap());
    }
    let claimed: Vec<Vec<i64>> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                s.spawn(move || {
                    let owner = format!("host{i}:1:1");
                    let mut mine = Vec::new();
                    loop {
                        let batch = h.claim_due(&owner, 7, &[], &[]).unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        for r in batch {
                            assert_eq!(r.owner.as_deref(), Some(owner.as_str()));
                            mine.push(r.id);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 400, "every run claimed once");
    assert_eq!(unique, ids);
    assert!(
        claimed.iter().filter(|c| !c.is_empty()).count() >= 2,
        "hosts shared the claims: {:?}",
        claimed.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let mut c = pg.client_db("claims");
    let v: i64 = c
        .query_one("SELECT version FROM ferry_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, 1);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM ferry_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[test]
fn a_queued_run_wakes_the_listeners_of_other_hosts() {
    let pg = PgServer::start();
    pg.create_database("wake");
    let t = target(&pg, "wake");
    let a = PostgresHistory::open(&t).unwrap();
    let b = PostgresHistory::open(&t).unwrap();
    let mut listener = b.queue_listener().unwrap().expect("postgres listens");
    assert!(
        !listener
            .wait(std::time::Duration::from_millis(100))
            .unwrap()
    );
    a.create_run(&new_run("j")).unwrap();
    assert!(listener.wait(std::time::Duration::from_secs(10)).unwrap());
}

/// Every table's rows, as text, ordered: what `ferry history migrate` must keep.
fn sqlite_dump(path: &std::path::Path, table: &str, cols: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare(&format!("SELECT {cols} FROM {table} ORDER BY 1, 2"))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    String::from_utf8_lossy(t).into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn history_migrate_copies_every_record_into_postgres() {
    let pg = PgServer::start();
    pg.create_database("moved");
    let mut p = Project::with_config("");
    p.script(
        "work",
        "return { params = { n = { type = 'number', default = 1 } }, run = function(ctx)\n\
         ctx.log.info('step %d', ctx.params.n)\n\
         ctx.log.warn('careful')\n\
         ctx.progress(1, 2)\n\
         ctx.state:set('seen', (ctx.state:get('seen') or 0) + 1)\n\
         local s = ferry.store('data/out')\n\
         s:write('r.txt', 'hello')\n\
         ctx.artifact(s, 'r.txt')\n\
         if ctx.params.n == 3 then error('three') end\n\
         return { n = ctx.params.n } end }\n",
    );
    for n in ["1", "2", "3"] {
        p.ferry(&["run", "work", "-p", &format!("n={n}")]);
    }
    assert_eq!(
        p.ferry(&["tokens", "create", "ci", "--scope", "run"]).code,
        0
    );
    let before = p.ferry(&["runs", "list", "--json"]).json();
    let shown_before: Vec<serde_json::Value> = (1..=3).map(|id| p.show(id)).collect();
    let db = p.at("data/ferry.db");
    // A wrong password is refused without being shown.
    let out = p.ferry_env(
        &[
            "history",
            "migrate",
            "--to",
            &pg.url_db("moved"),
            "--password-env",
            "PGPW",
        ],
        &[("PGPW", "wrong-pass-77")],
    );
    assert_ne!(out.code, 0);
    assert!(!out.all().contains("wrong-pass-77"), "{}", out.all());
    let out = p.ferry_env(
        &[
            "history",
            "migrate",
            "--to",
            &pg.url_db("moved"),
            "--password-env",
            "PGPW",
        ],
        &[("PGPW", PgServer::PASSWORD)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    // Every table: the same rows (times compared as stored, to the millisecond).
    let mut c = pg.client_db("moved");
    for table in ferry::history::COPIED_TABLES {
        let sqlite_n: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        let pg_n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(sqlite_n, pg_n, "{table}");
    }
    let logs = sqlite_dump(&db, "logs", "seq, run_id, level, message");
    let pg_logs: Vec<String> = c
        .query(
            "SELECT seq, run_id, level, message FROM logs ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}",
                r.get::<_, i64>(0),
                r.get::<_, i64>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3)
            )
        })
        .collect();
    assert_eq!(logs, pg_logs);
    assert!(logs.len() >= 6);
    // A second copy is refused: the target is not empty.
    let out = p.ferry_env(
        &[
            "history",
            "migrate",
            "--to",
            &pg.url_db("moved"),
            "--password-env",
            "PGPW",
        ],
        &[("PGPW", PgServer::PASSWORD)],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("copy into an empty database"),
        "{}",
        out.all()
    );
    // The project on PostgreSQL shows the same runs, and new ones get new ids.
    p.write(
        "ferry.toml",
        &format!(
            "[history]\nurl = \"{}\"\npassword = \"${{PGPW}}\"\n",
            pg.url_db("moved")
        ),
    );
    p.set_env("PGPW", PgServer::PASSWORD);
    let after = p.ferry(&["runs", "list", "--json"]).json();
    assert_eq!(before, after);
    for (i, shown) in shown_before.iter().enumerate() {
        assert_eq!(*shown, p.show(i as i64 + 1), "run {}", i + 1);
    }
    let out = p.ferry(&["run", "work", "-p", "n=4"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(p.show(4)["summary"]["n"].as_f64(), Some(4.0));
    assert_eq!(
        p.ferry(&["tokens", "list", "--json"]).json()[0]["name"],
        "ci"
    );
}

#[test]
fn malformed_history_settings_are_refused_without_showing_secrets() {
    let cases = [
        ("[history]\nurl = \"mysql://u@h/db\"\n", "history.url"),
        (
            "[history]\nurl = \"postgres://u:hunter2-secret@h/db\"\n",
            "holds a password",
        ),
        ("[history]\nurl = \"not a url\"\n", "history.url"),
        ("[history]\nurl = \"postgres:///db\"\n", "names no host"),
        ("[history]\npassword = \"x\"\n", "without [history] url"),
        (
            "[history]\nurl = \"postgres://u@h/db\"\npassword = \"${FERRY_TEST_UNSET_PG_PW}\"\n",
            "FERRY_TEST_UNSET_PG_PW is not set",
        ),
        (
            "[history]\nurl = \"postgres://u@h/db\"\nlease = \"1s\"\n",
            "history.lease",
        ),
        (
            "[history]\nurl = \"postgres://u@h/db\"\nleese = \"1m\"\n",
            "leese",
        ),
        (
            "[history]\nurl = \"postgres://u@h/db\"\nsslmode = \"sometimes\"\n",
            "history.sslmode",
        ),
        (
            "[history]\nurl = \"postgres://u@h/db\"\nca_file = \"missing-ca.pem\"\n",
            "history.ca_file",
        ),
    ];
    for (toml, expected) in cases {
        let p = Project::with_config(toml);
        let out = p.ferry(&["runs", "list"]);
        assert_eq!(out.code, 2, "{toml}: {}", out.all());
        assert!(out.stderr.contains(expected), "{toml}: {}", out.all());
        assert!(!out.all().contains("hunter2-secret"), "{}", out.all());
    }
    // `ferry history migrate` with a bad target or an unset password variable.
    let p = Project::with_config("");
    for (args, expected) in [
        (
            vec!["history", "migrate", "--to", "mysql://u@h/db"],
            "--to: unsupported URL scheme",
        ),
        (
            vec!["history", "migrate", "--to", "postgres://u:pw-in-url@h/db"],
            "holds a password",
        ),
        (
            vec![
                "history",
                "migrate",
                "--to",
                "postgres://u@h/db",
                "--password-env",
                "FERRY_TEST_UNSET_PG_PW",
            ],
            "FERRY_TEST_UNSET_PG_PW is not set",
        ),
        (
            vec!["history", "migrate", "--to", "postgres://u@h/db"],
            "no SQLite history",
        ),
    ] {
        let out = p.ferry(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.all());
        assert!(!out.all().contains("pw-in-url"), "{}", out.all());
    }
    // A server that does not answer: named, without the password.
    let p = Project::with_config(&format!(
        "[history]\nurl = \"postgres://ferry@127.0.0.1:{}/db\"\npassword = \"${{PGPW}}\"\n",
        common::postgres::dead_port()
    ));
    let out = p.ferry_env(&["runs", "list"], &[("PGPW", "zz-secret-zz")]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("history database postgres://ferry@127.0.0.1"),
        "{}",
        out.all()
    );
    assert!(!out.all().contains("zz-secret-zz"));
}
