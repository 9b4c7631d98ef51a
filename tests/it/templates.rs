//! Jobs created from a template over the HTTP API (`POST /api/v1/jobs`), against a real daemon
//! with the shipped plugins: each template makes a job `ferry check` accepts and that runs end to
//! end (export, import of a dropped file, backup then restore, Redis import into and backup of a
//! real redis-server), and malformed requests are refused before anything is written.

use crate::common;

use std::time::Duration;

use common::api::{Api, TOKEN};
use common::redis::{RedisServer, assert_same, contents, populate};
use common::{Daemon, Project, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project() -> Project {
    let p = Project::with_shipped_files();
    p.write(
        "ferry.toml",
        &format!(
            "[daemon]\nconcurrency = 4\nshutdown_grace = \"500ms\"\n[api]\ntoken = \"{TOKEN}\"\n"
        ),
    );
    p
}

/// POST /api/v1/jobs with `body`, expecting `want`; returns the answer.
fn create(api: &Api, body: Value, want: StatusCode) -> Value {
    let (s, v) = api.post("/api/v1/jobs", body);
    assert_eq!(s, want, "{v}");
    v
}

fn finished(api: &Api, created: &Value) -> Value {
    let id = created["run"]["id"].as_i64().expect("a run id");
    api.wait_state(id, &["succeeded", "failed", "cancelled", "timed_out"])
}

fn assert_error(v: &Value, code: &str, contains: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(contains),
        "want {contains:?} in {v}"
    );
}

fn check_accepts(p: &Project, name: &str) {
    let file = format!("scripts/{name}.lua");
    let r = p.ferry(&["check", &file]);
    assert_eq!(r.code, 0, "ferry check {name}: {}", r.all());
}

#[test]
fn export_with_filters_and_import_of_a_dropped_file() {
    let p = project();
    std::fs::create_dir_all(p.at("data")).unwrap();
    let db = rusqlite::Connection::open(p.at("data/shop.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL);
         INSERT INTO orders VALUES (1, 'ann', 5.0), (2, 'bob \"the\" builder', 25.5), (3, 'cy', 40.0);",
    )
    .unwrap();
    drop(db);
    let d = Daemon::start(&p);
    let api = Api::new(&d);

    let v = create(
        &api,
        json!({"name": "orders_export", "template": "export", "run": "now",
            "schedule": "30 2 * * *",
            "params": {"db": "data/shop.db", "table": "orders", "where": "amount > ?", "args": [10],
                "columns": ["id", "customer"], "order_by": ["-id"], "format": "csv",
                "store": "data/exports", "path": "orders.csv"}}),
        StatusCode::CREATED,
    );
    assert_eq!(v["created"], true, "{v}");
    let source = v["source"].as_str().unwrap();
    assert!(
        source.contains("export.schemas.run:check(OPTIONS)"),
        "{source}"
    );
    assert!(source.contains(r#"schedule = "30 2 * * *","#), "{source}");
    let run = finished(&api, &v);
    assert_eq!(run["state"], "succeeded", "{run}");
    let csv = std::fs::read_to_string(p.at("data/exports/orders.csv")).unwrap();
    assert_eq!(
        csv.trim(),
        "id,customer\n3,cy\n2,\"bob \"\"the\"\" builder\"",
        "{csv}"
    );
    check_accepts(&p, "orders_export");

    // An import job watching a folder: a file dropped there lands in the table.
    std::fs::create_dir_all(p.at("inbox/api_orders")).unwrap();
    let v = create(
        &api,
        json!({"name": "orders_in", "template": "import", "watch": "inbox/api_orders",
            "params": {"db": "data/in.db", "table": "orders", "types": {"id": "integer"},
                "on_conflict": "overwrite", "on_error": "continue"}}),
        StatusCode::CREATED,
    );
    assert_eq!(v["run"], Value::Null);
    check_accepts(&p, "orders_in");
    wait_for("the import job to load", Duration::from_secs(60), || {
        let (s, _) = api.get("/api/v1/jobs/orders_in");
        (s == StatusCode::OK).then_some(())
    });
    p.write("inbox/api_orders/new.csv", "id,name\n1,a\n2,b\n");
    let run = wait_for(
        "the import of the dropped file",
        Duration::from_secs(90),
        || {
            let (_, v) = api.get("/api/v1/runs?job=orders_in");
            let run = v["items"].as_array()?.first()?.clone();
            ["succeeded", "failed"]
                .contains(&run["state"].as_str()?)
                .then_some(run)
        },
    );
    assert_eq!(run["state"], "succeeded", "{run}");
    let n: i64 = rusqlite::Connection::open(p.at("data/in.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn backup_with_filters_then_restore_and_a_run_at_a_time() {
    let p = project();
    p.write("data/docs/a.txt", "one");
    p.write("data/docs/reports/r1.csv", "x,y\n");
    p.write("data/docs/skip.tmp", "scratch");
    p.write("data/docs/other.bin", "not included");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let v = create(
        &api,
        json!({"name": "docs_backup", "template": "backup", "run": "now",
            "schedule": {"cron": "0 1 * * *", "missed": "once"},
            "params": {"source": "data/docs", "point": "data/backups", "set": "docs",
                "kind": "incremental", "include": ["re:\\.(txt|csv)$", "*.tmp"],
                "exclude": ["re:^skip\\."], "compression": "zip", "on_error": "CONTINUE"}}),
        StatusCode::CREATED,
    );
    let run = finished(&api, &v);
    assert_eq!(run["state"], "succeeded", "{run}");
    check_accepts(&p, "docs_backup");

    let v = create(
        &api,
        json!({"name": "docs_restore", "template": "restore", "run": "now",
            "params": {"point": "data/backups", "set": "docs", "target": "data/restored",
                "conflict": "OVERWRITE", "on_error": "fail_fast"}}),
        StatusCode::CREATED,
    );
    let run = finished(&api, &v);
    assert_eq!(run["state"], "succeeded", "{run}");
    check_accepts(&p, "docs_restore");
    let mut files = p.files("data/restored");
    files.sort();
    assert_eq!(files, ["a.txt", "reports/r1.csv"]);
    assert_eq!(
        std::fs::read_to_string(p.at("data/restored/a.txt")).unwrap(),
        "one"
    );

    // "run": "at": the first run waits for its time.
    let v = create(
        &api,
        json!({"name": "docs_later", "template": "backup", "run": "at",
            "at": "2099-01-01T00:00:00Z",
            "params": {"source": "data/docs", "point": "data/backups", "set": "later"}}),
        StatusCode::CREATED,
    );
    let id = v["run"]["id"].as_i64().unwrap();
    let (_, run) = api.get(&format!("/api/v1/runs/{id}"));
    assert!(
        run["not_before"]
            .as_str()
            .unwrap_or("")
            .starts_with("2099-01-01"),
        "{run}"
    );
    assert_ne!(run["state"], "running", "{run}");
}

#[test]
fn redis_import_from_store_files_into_a_real_server() {
    let source = RedisServer::start();
    populate(&source, 50);
    let want = contents(&source, &[0, 3]);
    let dump = source.save();
    let target = RedisServer::start();
    let p = project();
    std::fs::create_dir_all(p.at("data/bucket")).unwrap();
    std::fs::copy(&dump, p.at("data/bucket/backup-1.rdb")).unwrap();
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let v = create(
        &api,
        json!({"name": "to_redis", "template": "redis_import", "run": "now",
            "params": {"target": target.url(0), "store": "data/bucket",
                "files": "backup-1.rdb", "method": "full"}}),
        StatusCode::CREATED,
    );
    let run = finished(&api, &v);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_same(&want, &contents(&target, &[0, 3]));
    check_accepts(&p, "to_redis");
    // A Redis backup job of the source, run now.
    let v = create(
        &api,
        json!({"name": "redis_nightly", "template": "redis_backup", "run": "now",
            "schedule": "0 3 * * *",
            "params": {"url": source.url(0), "point": "data/backups", "set": "cache"}}),
        StatusCode::CREATED,
    );
    let run = finished(&api, &v);
    assert_eq!(run["state"], "succeeded", "{run}");
    check_accepts(&p, "redis_nightly");
    // A password is never baked into a script.
    let v = create(
        &api,
        json!({"name": "to_redis2", "template": "redis_import",
            "params": {"target": target.url(0), "password": "pw-s3cret"}}),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_error(&v, "invalid_script", "redis_password");
    assert!(!v.to_string().contains("pw-s3cret"), "{v}");
    assert!(!p.at("scripts/to_redis2.lua").exists());
}

#[test]
fn malformed_requests_are_refused_and_write_nothing() {
    let p = project();
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let ok = json!({"source": "data/docs", "point": "data/backups"});
    let cases: &[(Value, StatusCode, &str, &str)] = &[
        (
            json!({"template": "backup"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`name`",
        ),
        (
            json!({"name": "x"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "known templates",
        ),
        (
            json!({"name": "x", "template": "nope"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "unknown template \"nope\"; known templates: export, import, backup, restore, redis_import",
        ),
        (
            json!({"name": "bad name", "template": "backup"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid job name",
        ),
        (
            json!({"name": "x", "template": "backup", "colour": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "colour",
        ),
        (
            json!({"name": "x", "template": "backup", "params": [1]}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "an array",
        ),
        (
            json!({"name": "x", "template": "backup", "params": ok, "run": "soon"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "\"soon\"",
        ),
        (
            json!({"name": "x", "template": "backup", "params": ok, "run": "at"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "needs `at`",
        ),
        (
            json!({"name": "x", "template": "backup", "params": ok, "at": "2099-01-01T00:00:00Z"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "goes with",
        ),
        (
            json!({"name": "x", "template": "backup", "params": ok, "run": "at", "at": "someday"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "`at`",
        ),
        (
            json!({"name": "x", "template": "backup", "params": {"source": "data/docs", "point": "p", "colour": "red"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "colour",
        ),
        (
            json!({"name": "x", "template": "backup", "params": {"source": "data/docs", "point": "p", "kind": "weekly"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "weekly",
        ),
        (
            json!({"name": "x", "template": "backup", "params": {"source": "data/docs"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "point",
        ),
        (
            json!({"name": "x", "template": "backup", "params": {"point": "p", "name": null}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "params.name",
        ),
        (
            json!({"name": "x", "template": "backup", "params": ok, "schedule": "61 * * * *"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "schedule",
        ),
        (
            json!({"name": "x", "template": "backup", "params": ok, "watch": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "watch",
        ),
    ];
    for (body, status, code, contains) in cases {
        let (s, v) = api.post("/api/v1/jobs", body.clone());
        assert_eq!(s, *status, "{body} → {v}");
        assert_error(&v, code, contains);
    }
    let r = api
        .http
        .post(api.url("/api/v1/jobs"))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!p.at("scripts/x.lua").exists());

    // Text that would break out of a string literal stays data.
    let evil = "\"; os.exit(1) --]] \n\0";
    let v = create(
        &api,
        json!({"name": "quoted", "template": "backup", "description": evil,
            "params": {"source": "data/docs", "point": "data/backups", "name": evil}}),
        StatusCode::CREATED,
    );
    check_accepts(&p, "quoted");
    wait_for("the job to load", Duration::from_secs(60), || {
        let (_, j) = api.get("/api/v1/jobs/quoted");
        (j["description"] == evil).then_some(())
    });
    assert_eq!(v["created"], true);

    // 409 when it exists; `"replace": true` replaces; the same source again is 200, unchanged.
    let body = json!({"name": "quoted", "template": "backup", "params": ok});
    let v = create(&api, body.clone(), StatusCode::CONFLICT);
    assert_error(&v, "conflict", "replace");
    let mut replace = body.clone();
    replace["replace"] = json!(true);
    let v = create(&api, replace.clone(), StatusCode::OK);
    assert_eq!(v["created"], false, "{v}");
    let on_disk = std::fs::read_to_string(p.at("scripts/quoted.lua")).unwrap();
    assert_eq!(on_disk, v["source"].as_str().unwrap());
    // An invalid replacement leaves the script as it was.
    replace["params"]["colour"] = json!("red");
    create(&api, replace, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        std::fs::read_to_string(p.at("scripts/quoted.lua")).unwrap(),
        on_disk
    );
}
