//! `ferry.http` against a real HTTP server started by the test (axum on a free port): requests
//! with query, headers and JSON; a store reader streamed as a request body and a response
//! streamed into a store, compared byte for byte; status errors with their kind, status and
//! body excerpt; retries; timeouts; the `[http]` host policy (deny lists, link-local and
//! metadata addresses, redirects to a denied host); malformed options; hidden credentials.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use common::Project;
use sha2::{Digest, Sha256};

/// What the server saw, for the assertions.
#[derive(Default)]
struct Seen {
    flaky: AtomicU32,
    /// Every request line (method path?query) received.
    requests: Mutex<Vec<String>>,
    /// Authorization headers received.
    auth: Mutex<Vec<String>>,
}

/// A test HTTP server on 127.0.0.1, running until the test ends.
struct Server {
    port: u16,
    seen: Arc<Seen>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Seen::default());
        let app = Router::new()
            .route("/echo", any(echo))
            .route("/status/{code}", any(status))
            .route("/flaky", get(flaky))
            .route("/slow", get(slow))
            .route("/big/{size}", get(big))
            .route("/redirect", get(redirect))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(seen.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move { axum::serve(listener, app).await });
        Server {
            port,
            seen,
            _rt: rt,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn record(seen: &Seen, method: &Method, uri: &str, headers: &HeaderMap) {
    seen.requests
        .lock()
        .unwrap()
        .push(format!("{method} {uri}"));
    if let Some(a) = headers.get(header::AUTHORIZATION) {
        seen.auth
            .lock()
            .unwrap()
            .push(a.to_str().unwrap_or_default().to_string());
    }
}

async fn echo(
    State(seen): State<Arc<Seen>>,
    method: Method,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&seen, &method, "/echo", &headers);
    let hex = format!("{:x}", Sha256::digest(&body));
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    axum::Json(serde_json::json!({
        "method": method.as_str(),
        "query": q,
        "x_test": h("x-test"),
        "content_type": h("content-type"),
        "user_agent": h("user-agent"),
        "len": body.len(),
        "sha256": hex,
        "text": if body.len() < 1000 { String::from_utf8_lossy(&body).into_owned() } else { String::new() },
    }))
    .into_response()
}

async fn status(
    State(seen): State<Arc<Seen>>,
    method: Method,
    headers: HeaderMap,
    Path(code): Path<u16>,
) -> Response {
    record(&seen, &method, &format!("/status/{code}"), &headers);
    let s = StatusCode::from_u16(code).unwrap();
    (s, format!("nope: status {code}\nmore details here")).into_response()
}

async fn flaky(State(seen): State<Arc<Seen>>) -> Response {
    let n = seen.flaky.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= 2 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "0")],
            format!("busy {n}"),
        )
            .into_response()
    } else {
        format!("ok after {n}").into_response()
    }
}

async fn slow() -> Response {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "late".into_response()
}

/// The byte at offset `i` of every `/big` body.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

async fn big(Path(size): Path<usize>) -> Response {
    let stream = futures_util::stream::iter((0..size).step_by(65536).map(move |start| {
        let end = (start + 65536).min(size);
        Ok::<_, std::io::Error>(Bytes::from((start..end).map(pattern).collect::<Vec<u8>>()))
    }));
    (
        [(header::CONTENT_LENGTH, size.to_string())],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, q.get("to").cloned().unwrap_or_default())],
    )
        .into_response()
}

fn run(p: &Project, name: &str, body: &str) -> common::RunResult {
    let file = p.root_script(
        name,
        &format!("return {{ run = function(ctx)\n{body}\nend }}"),
    );
    p.run_file(&file)
}

#[test]
fn requests_carry_query_headers_and_json_and_answers_come_back_typed() {
    let s = Server::start();
    let p = Project::new();
    let r = run(
        &p,
        "basic",
        &format!(
            r#"
local res = ferry.http.get("{url}", {{ query = {{ b = "two words", a = 1, tag = {{"x", "y"}} }},
  headers = {{ ["X-Test"] = "yes" }} }})
assert(res.ok and res.status == 200, "status " .. res.status)
assert(res.headers["content-type"] == "application/json", res.headers["content-type"])
local got = res:json()
local posted = ferry.http.post("{url}", {{ json = {{ name = "ferry", n = 3 }} }}):json()
local put = ferry.http.request("put", "{url}", {{ body = "plain text", headers = {{ ["Content-Type"] = "text/plain" }} }}):json()
local head = ferry.http.head("{url}")
return {{ query = got.query, x_test = got.x_test, ua = got.user_agent, posted = posted, put = put,
  head_status = head.status, head_body = head.body, bytes = res.bytes }}
"#,
            url = s.url("/echo")
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    let sum = &r.record["summary"];
    assert_eq!(
        sum["query"],
        serde_json::json!([["a", "1"], ["b", "two words"], ["tag", "x"], ["tag", "y"]])
    );
    assert_eq!(sum["x_test"], "yes");
    assert!(sum["ua"].as_str().unwrap().starts_with("ferry/"), "{sum}");
    assert_eq!(sum["posted"]["method"], "POST");
    assert_eq!(sum["posted"]["content_type"], "application/json");
    let posted: serde_json::Value =
        serde_json::from_str(sum["posted"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(posted, serde_json::json!({"name": "ferry", "n": 3}));
    assert_eq!(sum["put"]["method"], "PUT");
    assert_eq!(sum["put"]["text"], "plain text");
    assert_eq!(sum["put"]["content_type"], "text/plain");
    assert_eq!(sum["head_status"], 200);
    assert_eq!(sum["head_body"], "");
    assert!(sum["bytes"].as_u64().unwrap() > 10);
}

#[test]
fn bodies_stream_from_a_store_and_into_a_store_byte_for_byte() {
    let s = Server::start();
    let p = Project::new();
    // 5 MB up: a file written by the test, sent from a store reader.
    let upload: Vec<u8> = (0..5_000_000usize).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::create_dir_all(p.at("data")).unwrap();
    std::fs::write(p.at("data/up.bin"), &upload).unwrap();
    let size = 3_000_000usize;
    let r = run(
        &p,
        "stream",
        &format!(
            r#"
local data = ferry.store("data")
local sent = ferry.http.put("{echo}", {{ body = data:open("up.bin") }}):json()
local res = ferry.http.get("{big}", {{ into = data:create("down.bin"), progress = true }})
return {{ sent_len = sent.len, sent_sha = sent.sha256, got = res.bytes, body = res.body == nil,
  exists = data:exists("down.bin") }}
"#,
            echo = s.url("/echo"),
            big = s.url(&format!("/big/{size}"))
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    let sum = &r.record["summary"];
    assert_eq!(sum["sent_len"], upload.len());
    assert_eq!(
        sum["sent_sha"].as_str().unwrap(),
        format!("{:x}", Sha256::digest(&upload))
    );
    assert_eq!(sum["got"], size);
    assert_eq!(sum["body"], true);
    let down = std::fs::read(p.at("data/down.bin")).unwrap();
    assert_eq!(down.len(), size);
    assert!(down.iter().enumerate().all(|(i, b)| *b == pattern(i)));
}

#[test]
fn a_failed_download_leaves_nothing_at_the_final_name() {
    let s = Server::start();
    let p = Project::new();
    std::fs::create_dir_all(p.at("data")).unwrap();
    let r = run(
        &p,
        "partial",
        &format!(
            r#"
local data = ferry.store("data")
local ok, err = pcall(ferry.http.get, "{url}", {{ into = data:create("x.bin") }})
assert(not ok)
local ok2, err2 = pcall(ferry.http.get, "{slow}", {{ into = data:create("y.bin"), idle_timeout = "300ms" }})
return {{ kind = err.kind, status = err.status, kind2 = err2.kind, x = data:exists("x.bin"), y = data:exists("y.bin") }}
"#,
            url = s.url("/status/500"),
            slow = s.url("/slow")
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    let sum = &r.record["summary"];
    assert_eq!(sum["kind"], "server");
    assert_eq!(sum["status"], 500);
    assert_eq!(sum["kind2"], "timeout");
    assert_eq!(sum["x"], false);
    assert_eq!(sum["y"], false);
    let left: Vec<String> = p
        .files("data")
        .into_iter()
        .filter(|f| f != "ferry.db" && !f.starts_with(".ferry/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn statuses_become_errors_with_kind_status_and_excerpt() {
    let s = Server::start();
    let p = Project::new();
    let r = run(
        &p,
        "statuses",
        &format!(
            r#"
local out = {{}}
for _, code in ipairs({{404, 403, 409, 500, 418}}) do
  local ok, err = pcall(ferry.http.get, "{base}/status/" .. code .. "?token=hideme")
  assert(not ok)
  out[#out + 1] = {{ code = code, kind = err.kind, status = err.status, message = err.message }}
end
local res = ferry.http.get("{base}/status/404", {{ accept = {{404}} }})
out.accepted = {{ status = res.status, ok = res.ok, body = res.body }}
return out
"#,
            base = s.url("")
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    let sum = &r.record["summary"];
    let kinds: Vec<(u64, &str)> = (0..5)
        .map(|i| {
            let e = &sum[(i + 1).to_string().as_str()];
            (e["status"].as_u64().unwrap(), e["kind"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (404, "not_found"),
            (403, "denied"),
            (409, "conflict"),
            (500, "server"),
            (418, "server")
        ]
    );
    let msg = sum["1"]["message"].as_str().unwrap();
    assert!(
        msg.contains("GET http://127.0.0.1")
            && msg.contains("/status/404: HTTP 404: nope: status 404 more details here"),
        "{msg}"
    );
    assert!(!msg.contains("hideme"), "the query is not shown: {msg}");
    assert_eq!(sum["accepted"]["status"], 404);
    assert_eq!(sum["accepted"]["ok"], false);
}

#[test]
fn retries_wait_and_try_again_and_say_so() {
    let s = Server::start();
    let p = Project::new();
    let r = run(
        &p,
        "retry",
        &format!(
            r#"
local res = ferry.http.get("{url}", {{ retries = 3, backoff = "10ms" }})
return res.body
"#,
            url = s.url("/flaky")
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    assert_eq!(r.record["summary"], "ok after 3");
    let text = r.text();
    assert!(text.contains("HTTP 503: busy 1; retry 1 of 3"), "{text}");
    assert!(text.contains("retry 2 of 3"), "{text}");
    // Without retries the first 503 is the answer.
    s.seen.flaky.store(0, Ordering::SeqCst);
    let r = run(
        &p,
        "noretry",
        &format!("return ferry.http.get(\"{}\").body", s.url("/flaky")),
    );
    assert!(!r.succeeded());
    assert!(r.error().contains("HTTP 503: busy 1"), "{}", r.error());
    // An unreachable server is retried, then reported as unreachable.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = run(
        &p,
        "dead",
        &format!(
            r#"local ok, err = pcall(ferry.http.get, "http://127.0.0.1:{dead}/x", {{ retries = 1, backoff = "10ms" }})
return {{ kind = err.kind, message = err.message }}"#
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    assert_eq!(r.record["summary"]["kind"], "unreachable", "{}", r.text());
    assert!(r.text().contains("retry 1 of 1"), "{}", r.text());
}

#[test]
fn the_host_policy_refuses_denied_hosts_metadata_and_redirects_there() {
    let s = Server::start();
    let p = Project::with_config("[http]\ndeny = [\"*.corp\", \"10.0.0.0/8\"]\n");
    let r = run(
        &p,
        "policy",
        &format!(
            r#"
local out = {{}}
for i, url in ipairs({{
  "http://169.254.169.254/latest/meta-data/",
  "http://metadata.google.internal/computeMetadata/v1/",
  "http://db.corp/",
  "http://10.1.2.3/",
  "http://[fe80::1]/",
  "{redirect}?to=http://169.254.169.254/latest",
}}) do
  local ok, err = pcall(ferry.http.get, url)
  out[i] = ok and "ALLOWED" or (err.kind .. ": " .. err.message)
end
return out
"#,
            redirect = s.url("/redirect")
        ),
    );
    assert!(r.succeeded(), "{}", r.text());
    let out: Vec<String> = r.record["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(out.len(), 6, "{out:?}");
    for o in &out {
        assert!(o.starts_with("denied: "), "{out:?}");
    }
    assert!(
        out[0].contains("link-local or a cloud metadata address"),
        "{}",
        out[0]
    );
    assert!(out[1].contains("metadata service"), "{}", out[1]);
    assert!(out[2].contains("deny entry \"*.corp\""), "{}", out[2]);
    assert!(out[3].contains("deny entry \"10.0.0.0/8\""), "{}", out[3]);
    assert!(out[5].contains("169.254.169.254"), "{}", out[5]);

    // A name is checked by what it resolves to, at connection time.
    let p = Project::with_config("[http]\ndeny = [\"127.0.0.0/8\", \"::1\"]\n");
    let r = run(
        &p,
        "resolved",
        &format!(
            "return ferry.http.get(\"http://localhost:{}/echo\").body",
            s.port
        ),
    );
    assert!(!r.succeeded());
    assert!(
        r.error()
            .contains("address localhost (127.0.0.1) is denied")
            || r.error().contains("address localhost (::1) is denied"),
        "{}",
        r.error()
    );
    assert!(s.seen.requests.lock().unwrap().is_empty());

    // An allow list: only the named hosts.
    let p = Project::with_config("[http]\nallow = [\"api.example.com\"]\n");
    let r = run(
        &p,
        "allow",
        &format!("return ferry.http.get(\"{}\").body", s.url("/echo")),
    );
    assert!(!r.succeeded());
    assert_eq!(
        r.record["error"]["kind"].as_str().unwrap_or("denied"),
        "denied"
    );
    assert!(
        r.error()
            .contains("127.0.0.1 is not in [http] allow of ferry.toml (api.example.com)"),
        "{}",
        r.error()
    );
}

#[test]
fn malformed_options_and_config_are_refused_before_anything_is_sent() {
    let s = Server::start();
    let p = Project::new();
    let echo = s.url("/echo");
    for (call, expected) in [
        (
            format!("ferry.http.get('{echo}', {{ retry = 3 }})"),
            "retry",
        ),
        (
            format!("ferry.http.get('{echo}', {{ timeout = '5 parsecs' }})"),
            "option `timeout`",
        ),
        (
            format!("ferry.http.get('{echo}', {{ retries = 11 }})"),
            "must be from 0 to 10",
        ),
        (
            format!("ferry.http.get('{echo}', {{ accept = {{ 99 }} }})"),
            "option `accept`",
        ),
        (
            format!("ferry.http.get('{echo}', {{ headers = {{ ['X-A'] = {{}} }} }})"),
            "`X-A`",
        ),
        (
            format!("ferry.http.post('{echo}', {{ json = {{}}, body = 'x' }})"),
            "cannot both",
        ),
        (
            format!("ferry.http.request('BREW', '{echo}')"),
            "method \"BREW\"",
        ),
        (
            "ferry.http.get('ftp://example.com/x')".to_string(),
            "scheme \"ftp\"",
        ),
        ("ferry.http.get('not a url')".to_string(), "is not a URL"),
        (
            format!(
                "ferry.store('data'):write('u.bin', 'x') ferry.http.put('{echo}', {{ body = ferry.store('data'):open('u.bin'), retries = 2 }})"
            ),
            "cannot be used with a Reader body",
        ),
    ] {
        std::fs::create_dir_all(p.at("data")).unwrap();
        let r = run(
            &p,
            "bad",
            &format!(
                "local ok, err = pcall(function() {call} end)\nreturn {{ ok = ok, kind = err and err.kind, message = tostring(err) }}"
            ),
        );
        assert!(r.succeeded(), "{call}: {}", r.text());
        let sum = &r.record["summary"];
        assert_eq!(sum["ok"], false, "{call}");
        assert_eq!(sum["kind"], "invalid", "{call}: {sum}");
        assert!(
            sum["message"].as_str().unwrap().contains(expected),
            "{call}: {sum}"
        );
    }
    assert!(s.seen.requests.lock().unwrap().is_empty());

    for (config, expected) in [
        ("[http]\nallow = [\"http://x\"]\n", "http.allow[0]"),
        ("[http]\ndeny = [\"10.0.0.0/99\"]\n", "http.deny[0]"),
        ("[http]\nalow = [\"x\"]\n", "alow"),
    ] {
        let p = Project::with_config(config);
        let r = p.ferry(&["check"]);
        assert_ne!(r.code, 0, "{config}");
        assert!(r.all().contains(expected), "{config}: {}", r.all());
    }
}

#[test]
fn credentials_in_urls_and_headers_never_reach_the_history() {
    let s = Server::start();
    let p = Project::new();
    let r = run(
        &p,
        "secret",
        &format!(
            r#"
ctx.log.info("calling")
local ok, err = pcall(ferry.http.get, "http://user:pa55word-xyz@127.0.0.1:{port}/status/401",
  {{ headers = {{ Authorization = "Bearer tok-abc-123" }} }})
ctx.log.info("got " .. tostring(err) .. " Bearer tok-abc-123 pa55word-xyz")
error("failed with pa55word-xyz and tok-abc-123")
"#,
            port = s.port
        ),
    );
    assert!(!r.succeeded());
    let id = r.record["id"].as_i64().unwrap();
    let all = format!("{}{}", r.text(), p.history(id));
    assert!(!all.contains("pa55word-xyz"), "{all}");
    assert!(!all.contains("tok-abc-123"), "{all}");
    // The server did get them.
    assert_eq!(
        s.seen.auth.lock().unwrap().as_slice(),
        &["Bearer tok-abc-123".to_string()]
    );
}
