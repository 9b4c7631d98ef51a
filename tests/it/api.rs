//! The HTTP API through the real server (`ferry serve --listen 127.0.0.1:0`) and a real client.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::api::{Api, Sse};
use common::{Daemon, Project, wait_for};
use reqwest::StatusCode;
use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};

use common::api::TOKEN;

fn project(extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "ferry.toml",
        &format!("[limits]\nkill_grace = \"1s\"\n[daemon]\nconcurrency = 4\nshutdown_grace = \"500ms\"\n[api]\ntoken = \"{TOKEN}\"\n{extra}"),
    );
    p.script(
        "greet",
        r#"return { params = { name = { type = "string", required = true }, n = { type = "integer", default = 1 } },
                    overlap = "queue",
                    run = function(ctx) ctx.log.info("hello %s", ctx.params.name); ctx.log.info("n=%d", ctx.params.n)
                      return { name = ctx.params.name, n = ctx.params.n } end }"#,
    );
    p.script(
        "slow",
        r#"return { run = function(ctx) local t0 = os.time(); while os.time() - t0 < 60 do end end }"#,
    );
    p.script(
        "drop",
        r#"return { watch = { path = "inbox/drop", settle = "100ms" }, run = function(ctx) return ctx.trigger.file end }"#,
    );
    p
}

fn assert_error(v: &Value, code: &str, contains: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(contains),
        "want {contains:?} in {v}"
    );
}

#[test]
fn auth_is_required_and_compared() {
    let p = project("");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let r = api.http.get(api.url("/api/v1/jobs")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(&r.json().unwrap(), "unauthorized", "bearer token");
    let r = api
        .http
        .get(api.url("/api/v1/runs"))
        .bearer_auth("wrong-token-0123456789abcdef")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api
        .http
        .post(api.url("/api/v1/jobs/greet/runs"))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "no run without a token"
    );
    let r = api.http.get(api.url("/api/v1/health")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "health is public");
    assert_eq!(api.get("/api/v1/jobs").0, StatusCode::OK);
    assert_eq!(d.stop(), Some(0));
    assert!(p.runs().is_empty());
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let p = Project::new();
    let r = p.ferry(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains("refusing to serve the API on 0.0.0.0:0 without a token"),
        "{}",
        r.all()
    );
    p.write("ferry.toml", "[api]\ntoken = \"short\"\n");
    let r = p.ferry(&["serve"]);
    assert!(
        r.stderr
            .contains("api.token: must be at least 16 characters"),
        "{}",
        r.all()
    );
}

#[test]
fn jobs_trigger_runs_logs_and_errors() {
    let p = project("");
    let d = Daemon::start(&p);
    let api = Api::new(&d);

    let (s, jobs) = api.get("/api/v1/jobs");
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["drop", "greet", "slow"]);
    let (s, greet) = api.get("/api/v1/jobs/greet");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(greet["params"]["name"]["type"], "string");
    assert_eq!(greet["loaded"], true);
    let (s, v) = api.get("/api/v1/jobs/nope");
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "nope");

    let (s, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "Ada", "n": "7"}}),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["state"], "queued");
    let run = api.wait_state(id, &["succeeded"]);
    assert_eq!(run["summary"], json!({"name": "Ada", "n": 7}));
    assert_eq!(run["trigger"]["kind"], "api");
    assert!(run["artifacts"].is_array());

    let (_, logs) = api.get(&format!("/api/v1/runs/{id}/logs"));
    let lines: Vec<&str> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(lines, vec!["hello Ada", "n=7"]);
    let first = logs["items"][0]["seq"].as_i64().unwrap();
    let (_, tail) = api.get(&format!("/api/v1/runs/{id}/logs?after={first}"));
    assert_eq!(tail["items"].as_array().unwrap().len(), 1);
    assert_eq!(tail["next_after"], logs["next_after"]);

    // Bad params → 422 naming the param; malformed JSON → 400; unknown job → 404.
    let cases = [
        (
            json!({"params": {"name": "x", "n": "seven"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "param `n`",
        ),
        (
            json!({"params": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "param `name` is required",
        ),
        (
            json!({"params": {"name": "x", "zzz": 1}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "unknown param `zzz`",
        ),
        (
            json!({"params": {"name": "x"}, "at": "tomorrow"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "field `at`",
        ),
        (
            json!({"params": {"name": "x"}, "extra": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "unknown field `extra`",
        ),
    ];
    for (body, status, code, msg) in cases {
        let (s, v) = api.post("/api/v1/jobs/greet/runs", body.clone());
        assert_eq!(s, status, "{body} → {v}");
        assert_error(&v, code, msg);
    }
    let r = api
        .http
        .post(api.url("/api/v1/jobs/greet/runs"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"params\": ")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(&r.json().unwrap(), "bad_request", "invalid JSON body");
    let (s, v) = api.post("/api/v1/jobs/nope/runs", json!({}));
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "job \"nope\" does not exist");
    let (s, v) = api.get("/api/v1/runs/9999");
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "run 9999 does not exist");
    let (s, v) = api.get("/api/v1/runs/abc");
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request", "run id must be an integer");
    let (s, v) = api.get("/api/v1/nothing-here");
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "no route");
    let (s, v) = api.delete("/api/v1/jobs");
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "method_not_allowed", "DELETE");

    // Paged, filtered history.
    for n in 0..4 {
        api.post(
            "/api/v1/jobs/greet/runs",
            json!({"params": {"name": format!("p{n}")}}),
        );
    }
    wait_for("5 succeeded runs", Duration::from_secs(30), || {
        let (_, v) = api.get("/api/v1/runs?job=greet&state=succeeded");
        (v["total"] == 5).then_some(())
    });
    let (_, page) = api.get("/api/v1/runs?job=greet&page=2&page_size=2");
    assert_eq!(
        (
            page["page"].clone(),
            page["page_size"].clone(),
            page["total"].clone()
        ),
        (json!(2), json!(2), json!(5))
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, both) = api.get("/api/v1/runs?state=succeeded&state=failed");
    assert_eq!(both["total"], 5);
    let (_, none) = api.get("/api/v1/runs?state=failed,cancelled");
    assert_eq!(none["total"], 0);
    let (_, future) = api.get("/api/v1/runs?since=2999-01-01T00:00:00Z");
    assert_eq!(future["total"], 0);
    let (_, past) = api.get("/api/v1/runs?until=2000-01-01T00:00:00Z");
    assert_eq!(past["total"], 0);
    for (q, msg) in [
        ("state=bogus", "unknown run state"),
        ("since=yesterday", "query `since`"),
        ("page=0", "query `page`"),
        ("page_size=100000", "query `page_size`"),
        ("color=red", "unknown query parameter `color`"),
    ] {
        let (s, v) = api.get(&format!("/api/v1/runs?{q}"));
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        assert_error(&v, "bad_request", msg);
    }

    let r = api
        .http
        .get(api.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("ferry_runs{job=\"greet\",state=\"succeeded\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_run_duration_seconds_count{job=\"greet\",state=\"succeeded\"} 5")
    );
    assert!(metrics.contains("ferry_queue_depth 0") && metrics.contains("ferry_running 0"));
    assert!(
        metrics.contains("# TYPE ferry_runs_finished_total counter")
            && metrics.contains("ferry_runs_finished_total{job=\"greet\",state=\"succeeded\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_workers_warm "), "{metrics}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn cancel_and_delete() {
    let p = project("");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (_, v) = api.post("/api/v1/jobs/slow/runs", json!({}));
    let slow = v["id"].as_i64().unwrap();
    api.wait_state(slow, &["running"]);
    let (s, v) = api.delete(&format!("/api/v1/runs/{slow}"));
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict", "is running");
    let (s, v) = api.post(&format!("/api/v1/runs/{slow}/cancel"), json!({}));
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let run = api.wait_state(slow, &["cancelled"]);
    assert_eq!(run["error"]["code"], "cancelled");
    let (s, v) = api.post(&format!("/api/v1/runs/{slow}/cancel"), json!({}));
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict", "already ended");
    let (s, v) = api.post("/api/v1/runs/424242/cancel", json!({}));
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    let (_, v) = api.post("/api/v1/jobs/greet/runs", json!({"params": {"name": "a"}}));
    let done = v["id"].as_i64().unwrap();
    api.wait_state(done, &["succeeded"]);
    let (s, v) = api.delete(&format!("/api/v1/runs/{done}"));
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"id": done, "deleted": true}))
    );
    let (s, _) = api.delete(&format!("/api/v1/runs/{done}"));
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Batch delete with a mix of good, missing, running and malformed ids.
    let (_, v) = api.post("/api/v1/jobs/greet/runs", json!({"params": {"name": "b"}}));
    let good = v["id"].as_i64().unwrap();
    api.wait_state(good, &["succeeded"]);
    let (_, v) = api.post("/api/v1/jobs/slow/runs", json!({}));
    let running = v["id"].as_i64().unwrap();
    api.wait_state(running, &["running"]);
    let (s, v) = api.post(
        "/api/v1/runs/delete",
        json!({"ids": [good, slow, 999_999, running, "x"]}),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], 2);
    assert_eq!(v["failed"], 3);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0], json!({"id": good, "ok": true, "error": null}));
    assert_eq!(results[1]["ok"], true);
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert!(results[3]["error"].as_str().unwrap().contains("is running"));
    assert!(
        results[4]["error"]
            .as_str()
            .unwrap()
            .contains("not a run id")
    );
    let (s, v) = api.post("/api/v1/runs/delete", json!({"ids": []}));
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request", "non-empty");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn uploads_land_safely_and_start_a_run() {
    let p = project("max_upload = \"1KiB\"\n");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let upload = |job: &str, name: &str, bytes: Vec<u8>| {
        let form = multipart::Form::new().part(
            "file",
            multipart::Part::bytes(bytes).file_name(name.to_string()),
        );
        let r = api
            .http
            .post(api.url(&format!("/api/v1/jobs/{job}/upload")))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .unwrap();
        let s = r.status();
        (s, r.json::<Value>().unwrap_or(Value::Null))
    };
    let (s, v) = upload("drop", "orders.csv", b"a,b\n1,2\n".to_vec());
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let run = api.wait_state(v["id"].as_i64().unwrap(), &["succeeded"]);
    assert_eq!(run["summary"], "inbox/drop/.ferry/processing/orders.csv");
    let archived = wait_for("the archived upload", Duration::from_secs(10), || {
        std::fs::read(p.path().join("inbox/drop/.ferry/archive/orders.csv")).ok()
    });
    assert_eq!(archived, b"a,b\n1,2\n");

    for (evil, landed) in [
        ("../../escape.csv", "escape.csv"),
        ("/etc/passwd", "passwd"),
        ("..", "upload"),
    ] {
        let (s, v) = upload("drop", evil, b"x".to_vec());
        assert_eq!(s, StatusCode::ACCEPTED, "{evil}: {v}");
        assert_eq!(
            v["file"],
            format!("inbox/drop/.ferry/processing/{landed}"),
            "{evil}"
        );
        api.wait_state(v["id"].as_i64().unwrap(), &["succeeded"]);
        wait_for("the archived upload", Duration::from_secs(10), || {
            p.path()
                .join(format!("inbox/drop/.ferry/archive/{landed}"))
                .exists()
                .then_some(())
        });
    }
    assert!(!p.path().join("escape.csv").exists() && !p.path().join("inbox/escape.csv").exists());

    let (s, v) = upload("drop", "big.bin", vec![b'x'; 4096]);
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v, "payload_too_large", "1024 bytes");
    assert!(
        p.files_in("inbox/drop/.ferry/uploads").is_empty(),
        "no partial upload left"
    );
    let (s, v) = upload("greet", "x.csv", b"x".to_vec());
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request", "has no watch folder");
    let (s, _) = upload("nope", "x.csv", b"x".to_vec());
    assert_eq!(s, StatusCode::NOT_FOUND);
    let form = multipart::Form::new().text("other", "value");
    let r = api
        .http
        .post(api.url("/api/v1/jobs/drop/upload"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(&r.json().unwrap(), "bad_request", "field `file` is missing");
    let r = api
        .http
        .post(api.url("/api/v1/jobs/drop/upload"))
        .bearer_auth(TOKEN)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\ngarbage")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn hundred_concurrent_triggers_are_all_recorded() {
    let p = project("");
    let d = Daemon::start(&p);
    let base = d.url.clone();
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                let http = Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let r = http
                    .post(format!("{base}/api/v1/jobs/greet/runs"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"params": {"name": format!("c{i}")}}))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                r.json::<Value>().unwrap()["id"].as_i64().unwrap()
            })
        })
        .collect();
    let ids: BTreeSet<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(ids.len(), 100, "ids are unique");
    let api = Api::new(&d);
    wait_for("100 succeeded runs", Duration::from_secs(120), || {
        let (_, v) = api.get("/api/v1/runs?job=greet&state=succeeded&page_size=1");
        (v["total"] == 100).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    assert_eq!(p.runs_of("greet").len(), 100);
}

#[test]
fn a_run_at_a_time_survives_a_restart_and_runs_once() {
    let p = project("");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (s, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "later"}, "at": at.to_rfc3339()}),
    );
    assert_eq!(s, StatusCode::CREATED);
    let id = v["id"].as_i64().unwrap();
    assert_eq!(d.stop(), Some(0));
    assert_eq!(p.show(id)["state"], "queued");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let run = api.wait_state(id, &["succeeded"]);
    let started =
        chrono::DateTime::parse_from_rfc3339(run["started_at"].as_str().unwrap()).unwrap();
    assert!(started >= at, "started {started} before {at}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(p.runs_of("greet").len(), 1, "ran once");
}

#[test]
fn artifacts_download_streamed() {
    let p = project("");
    let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::create_dir_all(p.path().join("data/exports")).unwrap();
    std::fs::write(p.path().join("data/exports/big.bin"), &data).unwrap();
    p.script(
        "export",
        r#"return { run = function(ctx)
          ctx.artifact("data/exports", "big.bin")
          ferry.store("data/exports"):write("gone.bin", "soon gone")
          ctx.artifact("data/exports", "gone.bin")
        end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (_, v) = api.post("/api/v1/jobs/export/runs", json!({}));
    let id = v["id"].as_i64().unwrap();
    let run = api.wait_state(id, &["succeeded"]);
    assert_eq!(run["artifacts"][0]["name"], "big.bin");
    let r = api
        .http
        .get(api.url(&format!("/api/v1/runs/{id}/artifacts/big.bin")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(r.bytes().unwrap().as_ref(), data.as_slice());
    let (s, v) = api.get(&format!("/api/v1/runs/{id}/artifacts/nope.bin"));
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "has no artifact");
    // The run's own copy is served, whatever happened to the file since.
    std::fs::remove_file(p.path().join("data/exports/gone.bin")).unwrap();
    let r = api
        .http
        .get(api.url(&format!("/api/v1/runs/{id}/artifacts/gone.bin")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().unwrap(), "soon gone");
    // A copy that went missing from under ferry is a 404 naming the artifact.
    std::fs::remove_file(
        p.path()
            .join(format!("data/.ferry/artifacts/{id}/gone.bin")),
    )
    .unwrap();
    let (s, v) = api.get(&format!("/api/v1/runs/{id}/artifacts/gone.bin"));
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "cannot be read");
    assert_eq!(d.stop(), Some(0));
}

/// The HTTP methods among the keys of an OpenAPI path item.
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The document with every object schema closed: a property an answer has and its schema does
/// not name fails validation (`unevaluatedProperties`, which sees through `allOf`). The parts of
/// an `allOf` stay open, with the schemas they refer to copied in, so only the whole is closed.
fn closed(schema: &Value, in_all_of: bool, schemas: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            if in_all_of && let Some(Value::String(r)) = m.get("$ref") {
                let name = r.trim_start_matches("#/components/schemas/");
                return closed(&schemas[name], true, schemas);
            }
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let parts = k == "allOf";
                let v = match v {
                    Value::Array(items) => {
                        Value::Array(items.iter().map(|i| closed(i, parts, schemas)).collect())
                    }
                    other => closed(other, false, schemas),
                };
                out.insert(k.clone(), v);
            }
            let object = m.contains_key("properties") || m.contains_key("allOf");
            if object && !in_all_of && !m.contains_key("additionalProperties") {
                out.insert("unevaluatedProperties".into(), json!(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| closed(i, false, schemas)).collect())
        }
        other => other.clone(),
    }
}

/// Checks a JSON answer of `method path` with `status` against the document's schema for it
/// (the `default` answer for errors).
fn check_answer(doc: &Value, method: &str, path: &str, status: StatusCode, body: &Value) {
    let answers = &doc["paths"][path][method.to_lowercase()]["responses"];
    let answer = match &answers[status.as_str()] {
        Value::Null => &answers["default"],
        a => a,
    };
    let schema = &answer["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} answered {status} with JSON the document does not describe: {body}"
    );
    let schemas = &doc["components"]["schemas"];
    let mut root = closed(schema, false, schemas);
    root["components"] = closed(&doc["components"], false, schemas);
    if let Err(e) = jsonschema::validate(&root, body) {
        panic!("{method} {path} ({status}) does not match its schema: {e}\n{body:#}");
    }
}

/// GETs `path` and checks the answer against the document.
fn get_checked(api: &Api, doc: &Value, path: &str, template: &str) -> Value {
    let (status, body) = api.get(path);
    check_answer(doc, "GET", template, status, &body);
    body
}

#[test]
fn openapi_document_matches_the_router() {
    let doc = ferry::api::openapi_document();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ferry::api::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    // Every documented operation has a scope (health alone is open), and every one that
    // changes something is audited.
    for (method, path) in &documented {
        let route = ferry::api::ROUTES
            .iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} has no entry in ROUTES"));
        assert!(
            route.scope.is_some() || path == "/api/v1/health",
            "{method} {path} has no scope"
        );
        assert!(
            route.audit.is_some() || method == "GET" || path == "/api/v1/jobs/validate",
            "{method} {path} changes something but is not audited"
        );
    }
    assert_eq!(documented, routed, "docs and ROUTES differ");
    // Every documented route answers on the real server with something other than the router's
    // "no route" or "method not allowed".
    let p = project("");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    // Answers with data in them match their schemas too: a refused trigger, a run that ended
    // with a summary and logs, one waiting for its time, and the lists that hold them.
    let (s, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "doc", "secret_token": "x"}}),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    check_answer(&doc, "POST", "/api/v1/jobs/{name}/runs", s, &v);
    let (s, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "doc"}}),
    );
    check_answer(&doc, "POST", "/api/v1/jobs/{name}/runs", s, &v);
    let ok = v["id"].as_i64().unwrap();
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "doc"}, "at": later}),
    );
    check_answer(&doc, "POST", "/api/v1/jobs/{name}/runs", s, &v);
    wait_for("the documented run", Duration::from_secs(30), || {
        let (_, v) = api.get(&format!("/api/v1/runs/{ok}"));
        (v["state"] == "succeeded").then_some(())
    });
    let run = get_checked(
        &api,
        &doc,
        &format!("/api/v1/runs/{ok}"),
        "/api/v1/runs/{id}",
    );
    assert_eq!(run["trigger"], json!({"kind": "api"}));
    get_checked(
        &api,
        &doc,
        &format!("/api/v1/runs/{ok}/logs"),
        "/api/v1/runs/{id}/logs",
    );
    for path in [
        "/api/v1/runs",
        "/api/v1/jobs",
        "/api/v1/overview",
        "/api/v1/health",
        "/api/v1/tokens",
        "/api/v1/audit",
    ] {
        get_checked(&api, &doc, path, path);
    }
    get_checked(&api, &doc, "/api/v1/jobs/greet", "/api/v1/jobs/{name}");
    for (method, path) in &routed {
        let concrete = path.replace("{name}", "greet").replace("{id}", "1");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = api
            .http
            .request(m, api.url(&concrete))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        let status = r.status();
        let streams = r
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
        // An event stream never ends: its answering is enough.
        let is_json = r
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap_or("").starts_with("application/json"));
        let body: Value = if streams {
            Value::Null
        } else {
            r.json().unwrap_or(Value::Null)
        };
        // Whatever it answered (the data, or an error for an id that does not exist) is what
        // the document says it answers.
        if is_json {
            check_answer(&doc, method, path, status, &body);
        }
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let no_route = body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no route"));
        assert!(!no_route, "{method} {path} is not routed");
    }
    let r = api
        .http
        .get(api.url("/api/v1/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap(), doc);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn cli_client_talks_to_the_daemon() {
    let p = project("");
    let d = Daemon::start(&p);
    let env = [("FERRY_TOKEN", TOKEN)];
    let server = d.url.clone();
    let r = p.ferry_env(
        &[
            "--server", &server, "trigger", "greet", "-p", "name=cli", "-p", "n=3",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let id: i64 = r.stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    wait_for("the CLI-triggered run", Duration::from_secs(30), || {
        let r = p.ferry_env(
            &[
                "--server",
                &server,
                "runs",
                "show",
                &id.to_string(),
                "--json",
            ],
            &env,
        );
        (r.code == 0 && r.json()["state"] == "succeeded").then(|| r.json())
    });
    let r = p.ferry_env(
        &[
            "--server",
            &server,
            "runs",
            "show",
            &id.to_string(),
            "--json",
        ],
        &env,
    );
    let v = r.json();
    assert_eq!(v["summary"], json!({"name": "cli", "n": 3}));
    assert_eq!(v["logs"].as_array().unwrap().len(), 2);
    let r = p.ferry_env(&["--server", &server, "runs", "list", "--json"], &env);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = p.ferry_env(&["--server", &server, "jobs", "--json"], &env);
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    let r = p.ferry_env(
        &[
            "--server", &server, "trigger", "greet", "-p", "n=x", "-p", "name=y",
        ],
        &env,
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("param `n`"), "{}", r.all());
    // Without FERRY_TOKEN the client uses [api] token of the project's ferry.toml; a wrong
    // token is refused (exit 2: the daemon refused the request).
    let r = p.ferry(&["--server", &server, "runs", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = p.ferry_env(
        &["--server", &server, "runs", "list"],
        &[("FERRY_TOKEN", "wrong-token-0123456789abcdef")],
    );
    assert_eq!(r.code, 2, "wrong token: {}", r.all());
    assert!(r.stderr.contains("401"), "{}", r.all());
    // A run at a time queued through the local history is picked up by the daemon.
    let r = p.ferry(&["trigger", "greet", "-p", "name=local"]);
    assert_eq!(r.code, 0, "{}", r.all());
    wait_for("the locally queued run", Duration::from_secs(30), || {
        p.runs_of("greet")
            .into_iter()
            .find(|r| r["params"]["name"] == "local" && r["state"] == "succeeded")
    });
    let r = p.ferry_env(
        &["--server", &server, "runs", "delete", &id.to_string()],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let r = p.ferry_env(
        &["--server", &server, "runs", "show", &id.to_string()],
        &env,
    );
    assert_eq!(r.code, 1);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn credentials_in_params_never_come_back_out() {
    let p = project("");
    p.script(
        "connect",
        r#"return { params = { target = {}, password = {} },
          run = function(ctx)
            ctx.log.info("target %s, password %s", ctx.params.target, ctx.params.password)
            error("cannot reach " .. ctx.params.target .. " with " .. ctx.params.password)
          end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (s, v) = api.post(
        "/api/v1/jobs/connect/runs",
        json!({"params": {"target": "redis://:url-pw-4711@10.0.0.5:6379/0", "password": "param-pw-0815"}}),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let run = api.wait_state(id, &["failed"]);
    let (_, logs) = api.get(&format!("/api/v1/runs/{id}/logs"));
    let (_, list) = api.get("/api/v1/runs?job=connect");
    let shown = p.ferry(&["runs", "show", &id.to_string()]).all();
    for text in [run.to_string(), logs.to_string(), list.to_string(), shown] {
        assert!(!text.contains("url-pw-4711"), "{text}");
        assert!(!text.contains("param-pw-0815"), "{text}");
    }
    assert_eq!(run["params"]["target"], "redis://:***@10.0.0.5:6379/0");
    assert_eq!(run["params"]["password"], "***");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach redis://:***@10.0.0.5:6379/0 with ***"),
        "{run}"
    );
    assert_eq!(d.stop(), Some(0));
}

/// Issue #14: every error has the JSON shape and the right status, including the ones axum
/// answers on its own before a handler runs (body over the limit, a body that is not
/// multipart, a path parameter it cannot decode) and the fallbacks (unknown route, wrong
/// method).
#[test]
fn framework_rejections_have_the_json_error_shape() {
    let p = project("");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let send = |req: reqwest::blocking::RequestBuilder| -> (StatusCode, String, Value) {
        let r = req.bearer_auth(TOKEN).send().unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text:?}"));
        (status, ct, v)
    };
    let big = format!("{{\"params\": {{\"name\": \"{}\"}}}}", "x".repeat(3 << 20));
    /// What is sent, method, path, content type, body, status, code, part of the message.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        u16,
        &'a str,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("JSON body over the limit", "POST", "/api/v1/jobs/greet/runs", Some("application/json"), &big, 413, "payload_too_large", "request body larger than the limit of 2097152 bytes"),
        ("upload that is not multipart", "POST", "/api/v1/jobs/drop/upload", Some("application/json"), "{}", 415, "unsupported_media_type", "expected a multipart/form-data body with a `file` field"),
        ("upload without a content type", "POST", "/api/v1/jobs/drop/upload", None, "x", 415, "unsupported_media_type", "got content type \"none\""),
        ("malformed multipart", "POST", "/api/v1/jobs/drop/upload", Some("multipart/form-data; boundary=XYZ"), "this is not multipart", 400, "bad_request", "malformed multipart body"),
        ("path parameter that is not UTF-8", "GET", "/api/v1/runs/%FF", None, "", 400, "bad_request", "invalid utf-8"),
        ("bad path parameter", "GET", "/api/v1/runs/abc", None, "", 400, "bad_request", "abc"),
        ("bad query value", "GET", "/api/v1/runs?page=x", None, "", 400, "bad_request", "query `page`"),
        ("unknown query key", "GET", "/api/v1/runs?colour=red", None, "", 400, "bad_request", "colour"),
        ("malformed JSON", "POST", "/api/v1/jobs/greet/runs", None, "{not json", 400, "bad_request", ""),
        ("wrong method", "DELETE", "/api/v1/jobs", None, "", 405, "method_not_allowed", "DELETE is not allowed on /api/v1/jobs"),
        ("unknown route", "GET", "/api/v2/everything", None, "", 404, "not_found", "no route for GET /api/v2/everything"),
    ];
    // No connection reuse: the server closes a connection whose body it did not read (the
    // request over the limit), and a pooled client would send the next request into it.
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for &(what, method, path, content_type, body, status, code, contains) in cases {
        let mut req = http
            .request(method.parse().unwrap(), api.url(path))
            .body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (got, ct, v) = send(req);
        assert_eq!(got.as_u16(), status, "{what}: {v}");
        assert!(ct.starts_with("application/json"), "{what}: {ct}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains(&contains.to_lowercase()),
            "{what}: want {contains:?} in {v}"
        );
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(1),
            "{what}: only `error`: {v}"
        );
    }
    // The daemon still serves after all of them.
    let (s, _) = api.get("/api/v1/health");
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn events_stream_what_happens_and_a_run_can_be_followed() {
    let p = project("");
    p.script(
        "chatty",
        r#"return { overlap = "queue", run = function(ctx)
             for i = 1, 5 do
               ctx.log.info("line %d", i)
               ctx.progress(i, 5)
               local t0 = os.clock(); while os.clock() - t0 < 0.05 do end
             end
             return { lines = 5 } end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (s, v) = api.get("/api/v1/events?types=run_log,nope");
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request", "unknown event type \"nope\"");
    let (s, v) = api.get("/api/v1/events?run=x");
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let mut all = api.events("/api/v1/events?job=chatty");
    let (_, v) = api.post("/api/v1/jobs/chatty/runs", json!({}));
    let id = v["id"].as_i64().unwrap();
    let seen = all.until(|e| e.event == "run_finished");
    let kinds: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_queued"), "{kinds:?}");
    assert!(kinds.contains(&"run_started"), "{kinds:?}");
    let logs: Vec<&Sse> = seen.iter().filter(|e| e.event == "run_log").collect();
    assert_eq!(logs.len(), 5, "{kinds:?}");
    for (i, l) in logs.iter().enumerate() {
        assert_eq!(l.data["run_id"], id);
        assert_eq!(l.data["message"], format!("line {}", i + 1));
        assert!(l.data["seq"].is_i64());
    }
    let last = seen.last().unwrap();
    assert_eq!(last.data["state"], "succeeded");
    let ids: Vec<u64> = seen
        .iter()
        .map(|e| e.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "numbered in order: {ids:?}"
    );

    // Following a finished run replays its lines and ends.
    let mut f = api.events(&format!("/api/v1/runs/{id}/logs?follow=true"));
    let replay = f.until(|e| e.event == "run_finished");
    assert_eq!(replay.iter().filter(|e| e.event == "run_log").count(), 5);
    assert!(f.next_event().is_none(), "the stream ends with the run");
    // From a sequence number on: only what came after.
    let third = logs[2].data["seq"].as_i64().unwrap();
    let mut f = api.events(&format!("/api/v1/runs/{id}/logs?follow=true&after={third}"));
    let rest = f.until(|e| e.event == "run_finished");
    assert_eq!(rest.iter().filter(|e| e.event == "run_log").count(), 2);

    // Following a run live: every line once, in order, then its end.
    let (_, v) = api.post("/api/v1/jobs/chatty/runs", json!({}));
    let live = v["id"].as_i64().unwrap();
    let mut f = api.events(&format!("/api/v1/runs/{live}/logs?follow=true"));
    let got = f.until(|e| e.event == "run_finished");
    let lines: Vec<String> = got
        .iter()
        .filter(|e| e.event == "run_log")
        .map(|e| e.data["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        lines,
        (1..=5).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(got.last().unwrap().data["state"], "succeeded");
    let (s, _) = api.get("/api/v1/runs/999999/logs?follow=true");
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Scripts that change: loaded, or failing to reload.
    let mut jobs = api.events("/api/v1/events?types=job_loaded,job_reload_failed");
    p.script("fresh", "return { run = function(ctx) end }");
    let e = jobs.until(|e| e.data["job"] == "fresh");
    assert_eq!(e.last().unwrap().event, "job_loaded");
    p.script("fresh", "return { run = function(ctx) end ");
    let e = jobs.until(|e| e.event == "job_reload_failed");
    assert!(
        e.last().unwrap().data["error"]
            .as_str()
            .unwrap()
            .contains("fresh.lua"),
        "{e:?}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_paused_job_skips_its_schedule_and_keeps_its_files_waiting_across_restarts() {
    let p = project("");
    p.script(
        "tick",
        r#"return { schedule = "* * * * * *", run = function(ctx) return ctx.trigger.kind end }"#,
    );
    p.script(
        "w",
        r#"return { watch = { path = "inbox/w", settle = "100ms" }, run = function(ctx) return ctx.trigger.file end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    for job in ["tick", "w"] {
        let (s, v) = api.post(&format!("/api/v1/jobs/{job}/pause"), json!({}));
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v, json!({ "job": job, "paused": true, "changed": true }));
    }
    let (s, v) = api.post("/api/v1/jobs/nope/pause", json!({}));
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // Occurrences may have fired before the pause.
    let before = p
        .runs_of("tick")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .max()
        .unwrap_or(0);
    p.write("inbox/w/a.txt", "x");
    let skipped = wait_for("skipped occurrences", Duration::from_secs(15), || {
        let runs = p.runs_of("tick");
        let skipped: Vec<Value> = runs
            .into_iter()
            .filter(|r| r["summary"]["reason"] == "the job is paused")
            .collect();
        (skipped.len() >= 2).then_some(skipped)
    });
    assert!(skipped.iter().all(|r| r["state"] == "skipped"));
    assert!(
        p.runs_of("tick")
            .iter()
            .filter(|r| r["id"].as_i64().unwrap() > before)
            .all(|r| r["state"] == "skipped"),
        "no cron run ran while paused"
    );
    // Asked for, it still runs.
    let (_, v) = api.post("/api/v1/jobs/tick/runs", json!({}));
    let run = api.wait_state(v["id"].as_i64().unwrap(), &["succeeded"]);
    assert_eq!(run["summary"], "api");
    let (_, job) = api.get("/api/v1/jobs/w");
    assert_eq!(job["paused"], true, "{job}");
    assert_eq!(p.files_in("inbox/w"), [".ferry", "a.txt"], "the file waits");
    assert_eq!(d.stop(), Some(0));

    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (_, job) = api.get("/api/v1/jobs/tick");
    assert_eq!(job["paused"], true, "kept across the restart: {job}");
    assert!(p.runs_of("w").is_empty());
    // Resumed from the command line, beside the daemon: the file goes.
    let r = p.ferry(&["jobs", "resume", "w"]);
    assert_eq!(r.stdout.trim(), "job w resumed", "{}", r.all());
    wait_for("the file's run", Duration::from_secs(15), || {
        p.runs_of("w")
            .iter()
            .any(|r| r["state"] == "succeeded")
            .then_some(())
    });
    let (_, v) = api.post("/api/v1/jobs/tick/resume", json!({}));
    assert_eq!(v["changed"], true);
    wait_for("a cron run", Duration::from_secs(15), || {
        p.runs_of("tick")
            .iter()
            .any(|r| r["state"] == "succeeded" && r["summary"] == "cron")
            .then_some(())
    });
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_run_runs_again_with_its_params_and_its_failed_file() {
    let p = project("");
    p.script(
        "picky",
        r#"return { watch = { path = "inbox/p", settle = "100ms" }, params = { mood = { default = "calm" } },
             run = function(ctx)
               if not ferry.store("data"):exists("ok") then error("not yet") end
               return { file = ctx.trigger.file, kind = ctx.trigger.kind, of = ctx.trigger.of }
             end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (_, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({ "params": { "name": "Ada", "n": 3 } }),
    );
    let first = v["id"].as_i64().unwrap();
    api.wait_state(first, &["succeeded"]);
    let (s, v) = api.post(&format!("/api/v1/runs/{first}/rerun"), json!({}));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["of"], first);
    let again = api.wait_state(v["id"].as_i64().unwrap(), &["succeeded"]);
    assert_eq!(again["summary"], json!({ "name": "Ada", "n": 3 }));
    assert_eq!(again["trigger"], json!({ "kind": "rerun", "of": first }));
    let (s, v) = api.post("/api/v1/runs/999999/rerun", json!({}));
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (_, v) = api.post("/api/v1/jobs/slow/runs", json!({}));
    let slow = v["id"].as_i64().unwrap();
    api.wait_state(slow, &["running"]);
    let (s, v) = api.post(&format!("/api/v1/runs/{slow}/rerun"), json!({}));
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "conflict", "has not ended");
    api.post(&format!("/api/v1/runs/{slow}/cancel"), json!({}));

    // A file whose run failed is processed again, moved back from failed/.
    p.write("inbox/p/a.csv", "x\n");
    let failed = wait_for("the failed file run", Duration::from_secs(20), || {
        p.runs_of("picky")
            .into_iter()
            .find(|r| r["state"] == "failed")
    });
    wait_for("the file in failed/", Duration::from_secs(10), || {
        p.files_in("inbox/p/.ferry/failed")
            .contains(&"a.csv".to_string())
            .then_some(())
    });
    p.write("data/ok", "");
    let id = failed["id"].as_i64().unwrap();
    let r = p.ferry(&["runs", "rerun", &id.to_string()]);
    assert_eq!(r.code, 0, "{}", r.all());
    let new: i64 = r.stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    let run = api.wait_state(new, &["succeeded", "failed"]);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["summary"]["kind"], "rerun");
    assert_eq!(run["summary"]["of"], id);
    assert!(
        run["summary"]["file"]
            .as_str()
            .unwrap()
            .ends_with(".ferry/processing/a.csv"),
        "{run}"
    );
    wait_for("the file in archive/", Duration::from_secs(10), || {
        (p.files_in("inbox/p/.ferry/archive") == ["a.csv"]).then_some(())
    });
    assert!(
        p.files_in("inbox/p/.ferry/failed").is_empty(),
        "its error report went too"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn chained_jobs_run_once_per_upstream_run_across_restarts_and_cycles_are_refused() {
    let p = project("");
    p.script(
        "up",
        r#"return { params = { fail = { type = "boolean", default = false } }, overlap = "queue",
             run = function(ctx) if ctx.params.fail then error("upstream failed") end return { n = 7 } end }"#,
    );
    p.script(
        "down",
        r#"return { after = { job = "up", on = "success" }, run = function(ctx) return ctx.trigger end }"#,
    );
    p.script(
        "on_failure",
        r#"return { after = { { job = "up", on = "failure" } }, run = function(ctx) return ctx.trigger.state end }"#,
    );
    p.script(
        "cyc_a",
        r#"return { after = "cyc_b", run = function(ctx) end }"#,
    );
    p.script(
        "cyc_b",
        r#"return { after = "cyc_a", run = function(ctx) end }"#,
    );
    let r = p.ferry(&["check"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("cycle: cyc_a → cyc_b → cyc_a")
            || r.stdout.contains("cycle: cyc_b → cyc_a → cyc_b"),
        "{}",
        r.all()
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (_, jobs) = api.get("/api/v1/jobs");
    let broken: Vec<&Value> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["error"].as_str().is_some_and(|e| e.contains("cycle")))
        .collect();
    assert_eq!(broken.len(), 1, "one of the two closes the cycle: {jobs}");
    let (_, v) = api.post("/api/v1/jobs/up/runs", json!({}));
    let up = v["id"].as_i64().unwrap();
    let down = wait_for("the chained run", Duration::from_secs(20), || {
        p.runs_of("down")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    assert_eq!(
        down["summary"],
        json!({ "kind": "job", "of": up, "job": "up", "state": "succeeded", "summary": { "n": 7 } })
    );
    let (_, v) = api.post(
        "/api/v1/jobs/up/runs",
        json!({ "params": { "fail": true } }),
    );
    let failed = v["id"].as_i64().unwrap();
    let on_failure = wait_for("the failure handler", Duration::from_secs(20), || {
        p.runs_of("on_failure")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    assert_eq!(on_failure["trigger"]["of"], failed);
    assert_eq!(on_failure["summary"], "failed");
    assert_eq!(d.stop(), Some(0));
    // An upstream run while no daemon runs: its downstream run starts when one does, once.
    let r = p.ferry(&["run", "up"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let d = Daemon::start(&p);
    wait_for("the second chained run", Duration::from_secs(20), || {
        (p.runs_of("down").len() == 2).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&p);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.stop(), Some(0));
    let downs = p.runs_of("down");
    assert_eq!(downs.len(), 2, "once per upstream run: {downs:?}");
    let ofs: BTreeSet<i64> = downs
        .iter()
        .map(|r| r["trigger"]["of"].as_i64().unwrap())
        .collect();
    assert_eq!(ofs.len(), 2);
    assert_eq!(p.runs_of("on_failure").len(), 1);
}

#[test]
fn trigger_wait_and_logs_follow_stream_a_run_and_exit_by_its_outcome() {
    let p = project("");
    p.script(
        "talk",
        r#"return { params = { fail = { type = "boolean", default = false } }, overlap = "queue",
             run = function(ctx)
               for i = 1, 3 do ctx.log.info("step %d", i); local t0 = os.clock(); while os.clock() - t0 < 0.1 do end end
               if ctx.params.fail then error("it went wrong") end
             end }"#,
    );
    // Without a daemon, --wait says nothing would start the run, and queues nothing.
    let r = p.ferry(&["trigger", "talk", "--wait"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("no `ferry serve` runs for this project"),
        "{}",
        r.all()
    );
    assert!(p.runs().is_empty());
    let d = Daemon::start(&p);
    let r = p.ferry(&["trigger", "talk", "--wait"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let steps: Vec<&str> = r.stdout.lines().filter(|l| l.contains("step")).collect();
    assert_eq!(steps.len(), 3, "{}", r.all());
    let r = p.ferry(&["trigger", "talk", "--wait", "-p", "fail=true"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("it went wrong"), "{}", r.all());
    // Through the API, the same.
    let env = [("FERRY_TOKEN", TOKEN)];
    let server = d.url.clone();
    let r = p.ferry_env(&["--server", &server, "trigger", "talk", "--wait"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.stdout.lines().filter(|l| l.contains("step")).count(),
        3,
        "{}",
        r.all()
    );
    let r = p.ferry_env(
        &[
            "--server",
            &server,
            "trigger",
            "talk",
            "--wait",
            "-p",
            "fail=true",
        ],
        &env,
    );
    assert_eq!(r.code, 1, "{}", r.all());
    // Following a run from its start, locally and through the API.
    let api = Api::new(&d);
    let (_, v) = api.post("/api/v1/jobs/talk/runs", json!({}));
    let id = v["id"].as_i64().unwrap().to_string();
    let remote = p
        .cmd(&["--server", &server, "runs", "logs", &id, "-f"])
        .env("FERRY_TOKEN", TOKEN)
        .output()
        .unwrap();
    let local = p.ferry(&["runs", "logs", &id, "-f"]);
    assert_eq!(remote.status.code(), Some(0));
    assert_eq!(local.code, 0, "{}", local.all());
    let remote_out = String::from_utf8_lossy(&remote.stdout);
    assert_eq!(
        remote_out.lines().filter(|l| l.contains("step")).count(),
        3,
        "{remote_out}"
    );
    assert_eq!(
        local.stdout.lines().filter(|l| l.contains("step")).count(),
        3
    );
    let r = p.ferry(&["runs", "logs", &id]);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.all());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn overview_job_source_recent_runs_and_field_errors_for_the_ui() {
    let p = project("");
    p.script(
        "nightly",
        r#"return { schedule = "30 2 * * *", run = function(ctx) end }"#,
    );
    p.script(
        "fails",
        "return { run = function(ctx)\n  error(\"no table\")\nend }\n",
    );
    p.script("broken", "return { run = function(ctx) end\n");
    let d = Daemon::start(&p);
    let api = Api::new(&d);

    // A field error names its field.
    let (s, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "x", "n": "many"}}),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["field"], "n", "{v}");
    let (_, v) = api.post("/api/v1/jobs/greet/runs", json!({"params": {}}));
    assert_eq!(v["error"]["field"], "name", "{v}");
    let (_, v) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "x"}, "at": "soon"}),
    );
    assert_eq!(v["error"]["field"], "at", "{v}");

    let (_, a) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "Ada"}}),
    );
    let (_, f) = api.post("/api/v1/jobs/fails/runs", json!({}));
    let (_, later) = api.post(
        "/api/v1/jobs/greet/runs",
        json!({"params": {"name": "Bo"}, "at": "2099-01-01T00:00:00Z"}),
    );
    api.wait_state(a["id"].as_i64().unwrap(), &["succeeded"]);
    api.wait_state(f["id"].as_i64().unwrap(), &["failed"]);

    let (s, o) = api.get("/api/v1/overview?limit=5");
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["counts"]["succeeded"], 1, "{o}");
    assert_eq!(o["counts"]["failed"], 1, "{o}");
    assert_eq!(o["counts"]["queued"], 1, "{o}");
    assert_eq!(o["counts"]["timed_out"], 0, "{o}");
    assert_eq!(o["failures"]["total"], 1, "{o}");
    assert_eq!(o["failures"]["items"][0]["job"], "fails", "{o}");
    assert_eq!(o["queued"]["items"][0]["id"], later["id"], "{o}");
    let upcoming = o["upcoming"].as_array().unwrap();
    assert_eq!(upcoming[0]["kind"], "cron", "{o}");
    assert_eq!(upcoming[0]["job"], "nightly", "{o}");
    assert!(
        upcoming
            .iter()
            .any(|u| u["kind"] == "at" && u["run_id"] == later["id"]),
        "{o}"
    );
    assert_eq!(o["broken_jobs"][0]["name"], "broken", "{o}");
    assert!(
        o["broken_jobs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("broken.lua"),
        "{o}"
    );
    for bad in ["limit=0", "limit=101", "limit=x", "page=2"] {
        let (s, v) = api.get(&format!("/api/v1/overview?{bad}"));
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }

    // The strip of a job's newest states, newest first.
    let (_, j) = api.get("/api/v1/jobs/greet");
    let recent = j["recent_runs"].as_array().unwrap();
    assert_eq!(recent.len(), 2, "{j}");
    assert_eq!(recent[0]["id"], later["id"]);
    assert_eq!(recent[1]["state"], "succeeded");

    // The script as text.
    let r = api
        .http
        .get(api.url("/api/v1/jobs/fails/source"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(r.text().unwrap().contains("error(\"no table\")"));
    let (s, v) = api.get("/api/v1/jobs/nope/source");
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found", "nope");
    let r = api
        .http
        .get(api.url("/api/v1/jobs/fails/source"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(d.stop(), Some(0));
}
