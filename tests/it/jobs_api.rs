//! Job scripts as resources over the HTTP API (real daemon, real HTTP): PUT, validate, DELETE,
//! the versions each script went through and the version each run ran.

use crate::common;

use std::time::Duration;

use common::api::{Api, TOKEN};
use common::{Daemon, Project, wait_for};
use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use sha2::Digest;

fn project() -> Project {
    let p = Project::new();
    p.write(
        "ferry.toml",
        &format!("[limits]\nkill_grace = \"1s\"\n[daemon]\nconcurrency = 4\nshutdown_grace = \"500ms\"\n[api]\ntoken = \"{TOKEN}\"\n"),
    );
    p.script(
        "keep",
        r#"return { run = function(ctx) return "kept" end }"#,
    );
    p
}

fn sha256(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A script whose run returns `tag`.
fn script(tag: &str) -> String {
    format!(
        "return {{\n  description = \"{tag}\",\n  run = function(ctx) return \"{tag}\" end,\n}}\n"
    )
}

fn send(api: &Api, method: &str, path: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
    api.http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            api.url(path),
        )
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .unwrap()
}

fn json_of(r: Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().unwrap_or(Value::Null))
}

fn put(api: &Api, name: &str, source: &str) -> (StatusCode, Value) {
    json_of(send(
        api,
        "PUT",
        &format!("/api/v1/jobs/{name}"),
        source.to_owned(),
    ))
}

fn assert_error(v: &Value, code: &str, contains: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(contains),
        "want {contains:?} in {v}"
    );
}

/// Waits until the daemon runs version `hash` of job `name`.
fn wait_active(api: &Api, name: &str, hash: &str) {
    wait_for(
        &format!("job {name} at version {hash}"),
        Duration::from_secs(60),
        || {
            let (_, v) = api.get(&format!("/api/v1/jobs/{name}"));
            (v["script_version"] == hash).then_some(())
        },
    )
}

/// Triggers `name` and returns the finished run.
fn run(api: &Api, name: &str) -> Value {
    let (s, v) = api.post(&format!("/api/v1/jobs/{name}/runs"), json!({}));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    api.wait_state(
        v["id"].as_i64().unwrap(),
        &["succeeded", "failed", "cancelled", "timed_out"],
    )
}

/// The hidden (temporary) files left in `scripts/`.
fn leftovers(p: &Project) -> Vec<String> {
    std::fs::read_dir(p.at("scripts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn put_creates_a_job_invalid_changes_nothing_runs_keep_their_version_and_delete_removes_it() {
    let p = project();
    let d = Daemon::start(&p);
    let api = Api::new(&d);

    // Create.
    let v1 = script("v1");
    let (s, v) = put(&api, "hello", &v1);
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let h1 = sha256(&v1);
    assert_eq!(
        v,
        json!({"job": "hello", "hash": h1, "created": true, "changed": true})
    );
    assert_eq!(
        std::fs::read_to_string(p.at("scripts/hello.lua")).unwrap(),
        v1
    );
    wait_active(&api, "hello", &h1);
    let first = run(&api, "hello");
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(first["summary"], "v1");
    assert_eq!(first["script_version"], h1.as_str());

    // Invalid versions: 422 naming the line, the file and the active version unchanged.
    let bad_key = "return {\n  run = function(ctx) end,\n  schedule = 5,\n}\n";
    let (s, v) = put(&api, "hello", bad_key);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v, "invalid_script", "scripts/hello.lua:3: key `schedule`");
    let bad_lua = "return {\n  run = function(ctx)\n    return 1 +\n}\n";
    let (s, v) = put(&api, "hello", bad_lua);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v, "invalid_script", "scripts/hello.lua:4:");
    let (s, v) = put(&api, "hello", "error('refused at load')\n");
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v, "invalid_script", "scripts/hello.lua:1: refused at load");
    assert_eq!(
        std::fs::read_to_string(p.at("scripts/hello.lua")).unwrap(),
        v1
    );
    let (_, job) = api.get("/api/v1/jobs/hello");
    assert_eq!(job["script_version"], h1.as_str());
    assert_eq!(job["loaded"], true);
    assert_eq!(
        run(&api, "hello")["summary"],
        "v1",
        "the old version still runs"
    );

    // Replace; the same source again records no new version.
    let v2 = script("v2");
    let h2 = sha256(&v2);
    let (s, v) = put(&api, "hello", &v2);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"job": "hello", "hash": h2, "created": false, "changed": true})
    );
    let (s, v) = put(&api, "hello", &v2);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], false);
    wait_active(&api, "hello", &h2);
    let second = run(&api, "hello");
    assert_eq!(second["summary"], "v2");
    assert_eq!(second["script_version"], h2.as_str());

    // A hand edit is a version too, recorded as coming from the file.
    let v3 = script("v3");
    let h3 = sha256(&v3);
    p.script("hello", &v3);
    wait_active(&api, "hello", &h3);

    let (s, list) = api.get("/api/v1/jobs/hello/versions");
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 3);
    let got: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["hash"].as_str().unwrap(), i["origin"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (h3.as_str(), "file"),
            (h2.as_str(), "api"),
            (h1.as_str(), "api")
        ]
    );
    assert!(
        list["items"][0].get("source").is_none(),
        "lists carry no sources"
    );
    let (_, page) = api.get("/api/v1/jobs/hello/versions?page=2&page_size=2");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["hash"], h1.as_str());

    // The run made before the changes shows the source it ran.
    let (_, old) = api.get(&format!("/api/v1/runs/{}", first["id"]));
    let ran = old["script_version"].as_str().unwrap();
    let (s, version) = api.get(&format!("/api/v1/jobs/hello/versions/{ran}"));
    assert_eq!(s, StatusCode::OK, "{version}");
    assert_eq!(version["source"], v1.as_str());
    assert_eq!(version["origin"], "api");

    let r = p.ferry(&["runs", "show", &first["id"].to_string()]);
    assert!(
        r.stdout.contains(&format!("script:   version {h1}")),
        "{}",
        r.all()
    );

    // `ferry jobs history`, locally and through the API.
    let r = p.ferry(&["jobs", "history", "hello"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(
        lines[1].starts_with(&h3) && lines[1].ends_with("file"),
        "{}",
        r.stdout
    );
    assert!(
        lines[3].starts_with(&h1) && lines[3].ends_with("api (config)"),
        "{}",
        r.stdout
    );
    let r = p.ferry(&["--server", &d.url, "jobs", "--json", "history", "hello"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()[2]["hash"], h1.as_str());
    let r = p.ferry(&["jobs", "history", "nosuch"]);
    assert_eq!(r.code, 2, "{}", r.all());

    // Delete.
    let (s, v) = api.delete("/api/v1/jobs/hello");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"job": "hello", "deleted": true}));
    assert!(!p.at("scripts/hello.lua").exists());
    wait_for("hello removed", Duration::from_secs(60), || {
        (api.get("/api/v1/jobs/hello").0 == StatusCode::NOT_FOUND).then_some(())
    });
    let (s, v) = api.delete("/api/v1/jobs/hello");
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_error(&v, "not_found", "job \"hello\" does not exist");
    // Its versions and runs stay in the history.
    assert_eq!(api.get("/api/v1/jobs/hello/versions").1["total"], 3);
    assert_eq!(
        api.get(&format!("/api/v1/runs/{}", first["id"])).0,
        StatusCode::OK
    );
    assert_eq!(run(&api, "keep")["summary"], "kept");
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn validate_writes_nothing_and_malformed_requests_are_refused() {
    let p = project();
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let before = p.files("scripts");

    let ok = script("ok");
    let (s, v) = json_of(send(
        &api,
        "POST",
        "/api/v1/jobs/validate?name=fresh",
        ok.clone(),
    ));
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"valid": true, "job": "fresh", "hash": sha256(&ok)})
    );
    let (s, v) = json_of(send(&api, "POST", "/api/v1/jobs/validate", ok.clone()));
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["job"], "unnamed");
    let (s, v) = json_of(send(
        &api,
        "POST",
        "/api/v1/jobs/validate?name=fresh",
        "return {\n  run = 5,\n}\n",
    ));
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v, "invalid_script", "scripts/fresh.lua:2: key `run`");
    let (s, v) = json_of(send(
        &api,
        "POST",
        "/api/v1/jobs/validate?nmae=x",
        ok.clone(),
    ));
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "bad_request", "unknown query parameter `nmae`");
    let (s, v) = json_of(send(
        &api,
        "POST",
        "/api/v1/jobs/validate?name=a.b",
        ok.clone(),
    ));
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "bad_request", "invalid job name \"a.b\"");
    assert_eq!(api.get("/api/v1/jobs/fresh").0, StatusCode::NOT_FOUND);

    // Malformed PUTs.
    for bad in ["a.b", "x%20y", "..%2Fetc", &"a".repeat(65)] {
        let (s, v) = put(&api, bad, &ok);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_error(&v, "bad_request", "invalid job name");
        assert_eq!(v["error"]["field"], "name");
    }
    for empty in ["", "  \n\t"] {
        let (s, v) = put(&api, "fresh", empty);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_error(&v, "bad_request", "empty body");
    }
    let (s, v) = json_of(send(
        &api,
        "PUT",
        "/api/v1/jobs/fresh",
        b"return {}\xff\xfe".to_vec(),
    ));
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error(
        &v,
        "bad_request",
        "not UTF-8 text (invalid byte at offset 9)",
    );
    let big = format!("{ok}--{}\n", "x".repeat(1024 * 1024));
    let (s, v) = put(&api, "fresh", &big);
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error(&v, "payload_too_large", "the limit is 1048576 bytes");
    let r = api
        .http
        .put(api.url("/api/v1/jobs/fresh"))
        .bearer_auth(TOKEN)
        .json(&json!({"source": ok}))
        .send()
        .unwrap();
    let (s, v) = json_of(r);
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert_error(
        &v,
        "unsupported_media_type",
        "send the Lua source as `text/plain`",
    );
    // Writing a job is running code on the host: never without the token.
    let r = api
        .http
        .put(api.url("/api/v1/jobs/fresh"))
        .header("content-type", "text/plain")
        .body(ok.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api
        .http
        .delete(api.url("/api/v1/jobs/keep"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Versions: malformed and unknown.
    let (s, v) = api.get("/api/v1/jobs/keep/versions/abc");
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "bad_request", "64 lowercase hex digits");
    let (s, v) = api.get(&format!("/api/v1/jobs/keep/versions/{}", sha256("other")));
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = api.get("/api/v1/jobs/nosuch/versions");
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = api.get("/api/v1/jobs/keep/versions?page=0");
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api.get("/api/v1/jobs/keep/versions?limit=3");
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api.get("/api/v1/jobs/keep/versions");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"][0]["origin"], "file", "{v}");

    assert_eq!(p.files("scripts"), before, "nothing was written");
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn parallel_puts_of_one_job_leave_one_whole_version() {
    let p = project();
    // The temporary file of a write whose process died goes when the daemon starts.
    p.write("scripts/.race.lua.1-00000000000000ff.tmp", "return {");
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    // Large enough that a torn write would show: each source is about 200 KiB.
    let sources: Vec<String> = (0..8)
        .map(|i| {
            let filler = format!("-- writer {i}\n").repeat(16 * 1024);
            format!("{filler}{}", script(&format!("w{i}")))
        })
        .collect();
    let statuses: Vec<StatusCode> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let api = &api;
                scope.spawn(move || put(api, "race", src).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
    let on_disk = std::fs::read_to_string(p.at("scripts/race.lua")).unwrap();
    let winner = sources
        .iter()
        .position(|s| *s == on_disk)
        .expect("the file is one whole version");
    let hash = sha256(&on_disk);
    wait_active(&api, "race", &hash);
    // The reload may have seen only some of the versions; each it saw is whole and recorded
    // as written through the API, and the newest is the file.
    let (_, list) = api.get("/api/v1/jobs/race/versions?page_size=100");
    assert_eq!(list["items"][0]["hash"], hash.as_str(), "{list}");
    let hashes: Vec<String> = sources.iter().map(|s| sha256(s)).collect();
    for item in list["items"].as_array().unwrap() {
        assert!(hashes.iter().any(|h| item["hash"] == h.as_str()), "{item}");
        assert_eq!(item["origin"], "api", "{item}");
    }
    let r = run(&api, "race");
    assert_eq!(r["summary"], format!("w{winner}"));
    assert_eq!(r["script_version"], hash.as_str());
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn two_versions_of_a_script_are_compared_as_a_unified_diff() {
    let p = project();
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (one, two) = (script("one"), script("two"));
    let (s, _) = put(&api, "hello", &one);
    assert!(s.is_success());
    wait_active(&api, "hello", &sha256(&one));
    let (s, _) = put(&api, "hello", &two);
    assert!(s.is_success());
    wait_active(&api, "hello", &sha256(&two));
    let old = &sha256(&one)[..8];
    // Local history and through the daemon: the same diff, to the newest version by default.
    for server in [None, Some(d.url.as_str())] {
        let mut args = vec![];
        if let Some(url) = server {
            args.extend(["--server", url]);
        }
        args.extend(["jobs", "diff", "hello", old]);
        let r = p.ferry_env(&args, &[("FERRY_TOKEN", TOKEN)]);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(
            r.stdout
                .contains(&format!("--- hello.lua@{}", &sha256(&one)[..12])),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("-  description = \"one\","),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("+  description = \"two\","),
            "{}",
            r.stdout
        );
    }
    for (bad, says) in [("ab", "at least 4"), ("ffffffff", "no version")] {
        let r = p.ferry(&["jobs", "diff", "hello", bad]);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(says), "{}", r.all());
    }
    let r = p.ferry(&["jobs", "diff", "nosuchjob", "abcd"]);
    assert_eq!(r.code, 2, "{}", r.all());
}
