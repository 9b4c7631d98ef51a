//! Named API tokens with scopes, revocation and the audit log, against a real daemon over real
//! HTTP, and the `ferry tokens` / `ferry audit` commands.

use crate::common;

use common::api::{Api, TOKEN};
use common::{Daemon, Project};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn project(api: &str) -> Project {
    let p = Project::new();
    p.write(
        "ferry.toml",
        &format!("[daemon]\nshutdown_grace = \"500ms\"\n[api]\n{api}\n"),
    );
    p.script(
        "greet",
        r#"return { run = function(ctx) ctx.log.info("hello") end }"#,
    );
    p
}

/// `ferry tokens create NAME --scope SCOPE`: the token, printed once on stdout.
fn create(p: &Project, name: &str, scope: &str) -> String {
    let r = p.ferry(&["tokens", "create", name, "--scope", scope]);
    assert_eq!(r.code, 0, "{}", r.all());
    let token = r.stdout.trim().to_string();
    assert!(token.starts_with("ferry_") && token.len() == 70, "{token}");
    token
}

fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = api.http.request(m, api.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "text/plain").body(b.to_string());
    }
    let r = req.send().unwrap();
    let s = r.status();
    (s, r.json().unwrap_or(Value::Null))
}

fn forbidden_naming(v: &Value, scope: &str) {
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains(&format!("`{scope}` scope")), "{m}");
}

#[test]
fn scopes_revocation_and_the_audit_log() {
    let p = project(&format!("token = \"{TOKEN}\""));
    let reader = create(&p, "reader", "read");
    let runner = create(&p, "runner", "run");
    let boss = create(&p, "boss", "admin");
    let d = Daemon::start(&p);
    let api = Api::new(&d);

    // read: reads, cannot trigger.
    assert_eq!(
        call(&api, "GET", "/api/v1/jobs", &reader, None).0,
        StatusCode::OK
    );
    let (s, v) = call(&api, "POST", "/api/v1/jobs/greet/runs", &reader, None);
    assert_eq!(s, StatusCode::FORBIDDEN);
    forbidden_naming(&v, "run");
    // run: triggers, cannot write jobs nor read the audit log.
    let (s, v) = call(&api, "POST", "/api/v1/jobs/greet/runs", &runner, None);
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    api.wait_state(id, &["succeeded"]);
    let script = r#"return { run = function(ctx) end }"#;
    let (s, v) = call(&api, "PUT", "/api/v1/jobs/made", &runner, Some(script));
    assert_eq!(s, StatusCode::FORBIDDEN);
    forbidden_naming(&v, "admin");
    assert!(!p.at("scripts/made.lua").exists());
    let (s, v) = call(&api, "GET", "/api/v1/audit", &runner, None);
    assert_eq!(s, StatusCode::FORBIDDEN);
    forbidden_naming(&v, "admin");
    // admin: writes jobs, makes tokens (shown once), revokes them.
    let (s, v) = call(&api, "PUT", "/api/v1/jobs/made", &boss, Some(script));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &api,
        "DELETE",
        "/api/v1/runs/{id}"
            .replace("{id}", &id.to_string())
            .as_str(),
        &boss,
        None,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = api
        .http
        .post(api.url("/api/v1/tokens"))
        .bearer_auth(&boss)
        .json(&json!({ "name": "viewer", "scope": "read" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let viewer = r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(&api, "GET", "/api/v1/runs", &viewer, None).0,
        StatusCode::OK
    );
    // Malformed token requests: unknown scope, bad name, a name taken.
    for (body, code) in [
        (
            json!({ "name": "x", "scope": "write" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "no spaces", "scope": "read" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "config", "scope": "read" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "viewer", "scope": "read" }),
            StatusCode::CONFLICT,
        ),
        (
            json!({ "name": "x", "scope": "read", "extra": 1 }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = api
            .http
            .post(api.url("/api/v1/tokens"))
            .bearer_auth(&boss)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), code, "{body}");
    }
    // Revoked through the API: refused at once.
    let (s, _) = call(&api, "DELETE", "/api/v1/tokens/runner", &boss, None);
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&api, "POST", "/api/v1/jobs/greet/runs", &runner, None);
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // Revoked by the CLI while the daemon runs: refused at once too, and the event stream
    // opened with it ends (a `revoked` event, then the end), though no request of the daemon's
    // own revoked it.
    let mut stream = api.events_with("/api/v1/events", &viewer);
    let (ended_tx, ended) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while let Some(e) = stream.next_event() {
            seen.push(e.event);
        }
        let _ = ended_tx.send(seen);
    });
    let r = p.ferry(&["tokens", "revoke", "viewer"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        call(&api, "GET", "/api/v1/runs", &viewer, None).0,
        StatusCode::UNAUTHORIZED
    );
    let seen = ended
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the stream of a revoked token ended");
    assert_eq!(seen.last().map(String::as_str), Some("revoked"), "{seen:?}");
    watcher.join().unwrap();
    // The config token is the admin token `config`.
    let (s, v) = call(&api, "POST", "/api/v1/jobs/greet/pause", TOKEN, None);
    assert_eq!(s, StatusCode::OK, "{v}");

    // The UI signs in with a named token and the session says who it is.
    let r = api
        .http
        .post(api.url("/ui/login"))
        .json(&json!({ "token": reader }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api
        .http
        .get(api.url("/ui/session"))
        .header("cookie", format!("ferry_token={reader}"))
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["signed_in"], true, "{v}");
    assert_eq!(v["name"], "reader");
    assert_eq!(v["scope"], "read");
    let r = api
        .http
        .post(api.url("/ui/login"))
        .json(&json!({ "token": runner }))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a revoked token signs nobody in"
    );

    // The audit log: who did what to which target, never a token's value.
    let r = api
        .http
        .get(api.url("/api/v1/audit?page_size=100"))
        .bearer_auth(&boss)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let has = |actor: &str, action: &str, target: &str, status: u16| {
        v["items"].as_array().unwrap().iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["target"] == target
                && e["status"] == status
                && e["source"].as_str().unwrap().starts_with("127.0.0.1:")
        })
    };
    assert!(has("runner", "run.trigger", "greet", 201), "{v}");
    assert!(has("reader", "run.trigger", "greet", 403), "{v}");
    assert!(has("runner", "job.write", "made", 403), "{v}");
    assert!(has("boss", "job.write", "made", 201), "{v}");
    assert!(has("boss", "run.delete", &id.to_string(), 200), "{v}");
    assert!(has("boss", "token.create", "viewer", 201), "{v}");
    assert!(has("boss", "token.revoke", "runner", 200), "{v}");
    assert!(has("config", "job.pause", "greet", 200), "{v}");
    let (s, v) = call(&api, "GET", "/api/v1/audit?page_size=0", TOKEN, None);
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = call(&api, "GET", "/api/v1/audit?limit=3", TOKEN, None);
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The version written by the API names its writer.
    // (Recorded when the daemon's reload loads the file.)
    let v = common::wait_for("the version of `made`", Duration::from_secs(60), || {
        let (s, v) = call(&api, "GET", "/api/v1/jobs/made/versions", TOKEN, None);
        (s == StatusCode::OK && v["total"] == 1).then_some(v)
    });
    assert_eq!(v["items"][0]["written_by"], "boss", "{v}");
    assert_eq!(v["items"][0]["origin"], "api", "{v}");

    // `ferry audit` reads the same log locally, the CLI's own token actions included.
    let r = p.ferry(&["audit", "--json", "--limit", "1000"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let local: Value = r.json();
    assert!(
        local
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "local"
                && e["action"] == "token.revoke"
                && e["target"] == "viewer")
    );
    let table = p.ferry(&["audit"]);
    assert!(table.stdout.contains("run.trigger"), "{}", table.all());
    let daemon_log = d.log();
    for secret in [&reader, &runner, &boss, &viewer, &TOKEN.to_string()] {
        assert!(!text.contains(secret.as_str()), "a token in the audit log");
        assert!(
            !r.stdout.contains(secret.as_str()),
            "a token in ferry audit"
        );
        assert!(!table.stdout.contains(secret.as_str()));
        assert!(
            !daemon_log.contains(secret.as_str()),
            "a token in the daemon's log"
        );
    }
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn tokens_cli_prints_once_lists_without_values_and_refuses_bad_input() {
    let p = project("");
    let t = create(&p, "ci", "run");
    let r = p.ferry(&["tokens", "list"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("ci") && r.stdout.contains("run"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains(&t));
    let r = p.ferry(&["tokens", "list", "--json"]);
    let v = r.json();
    assert_eq!(v[0]["name"], "ci");
    assert_eq!(v[0]["scope"], "run");
    assert!(v[0]["last_used"].is_null());
    assert!(!r.all().contains(&t));
    for (args, want) in [
        (
            vec!["tokens", "create", "ci", "--scope", "read"],
            "exists already",
        ),
        (
            vec!["tokens", "create", "bad name", "--scope", "read"],
            "invalid token name",
        ),
        (
            vec!["tokens", "create", "config", "--scope", "read"],
            "reserved",
        ),
        (
            vec!["tokens", "create", "x", "--scope", "write"],
            "invalid value 'write'",
        ),
        (vec!["tokens", "create", "x"], "--scope"),
        (
            vec!["tokens", "revoke", "nobody"],
            "no token named \"nobody\"",
        ),
        (vec!["audit", "--limit", "0"], "--limit"),
    ] {
        let r = p.ferry(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        assert!(r.stderr.contains(want), "{args:?}: {}", r.all());
    }
    // A token turns auth on even with no `[api] token`.
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let r = api.http.get(api.url("/api/v1/jobs")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&api, "GET", "/api/v1/jobs", &t, None).0,
        StatusCode::OK
    );
    let r = api.http.get(api.url("/ui/session")).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["auth"], "token");
    let r = p.ferry(&["tokens", "list", "--json"]);
    assert!(!r.json()[0]["last_used"].is_null(), "{}", r.all());
    assert_eq!(d.stop(), Some(0));
}
