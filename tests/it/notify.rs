//! Notifications through the real binary and real receivers: a local HTTP server (webhook with
//! its HMAC signature, Slack-shaped payloads), Debian's aiosmtpd as the mail server (plain, and
//! STARTTLS with a login), a receiver that is down (retried, recorded as failed, runs go on),
//! deliveries pending across a restart, and malformed settings refused at load.

use crate::common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::{Api, TOKEN};
use common::{Daemon, Project, wait_for};
use serde_json::{Value, json};

/// Long enough for a loaded 2-core machine; every wait polls.
const WAIT: Duration = Duration::from_secs(60);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A local HTTP receiver on a free port: keeps every request and answers 200 (503 to the first
/// request to a path starting with `/flaky`).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Receiver {
    fn start() -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("a free port"))
    }

    fn start_on(listener: TcpListener) -> Receiver {
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let keep = got.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().fallback(
                    move |uri: axum::http::Uri,
                          headers: axum::http::HeaderMap,
                          body: axum::body::Bytes| {
                        let keep = keep.clone();
                        async move {
                            let mut got = keep.lock().unwrap();
                            // `/flaky...` answers 503 to its first request.
                            let first = !got.iter().any(|r| r.path == uri.path());
                            let status = if first && uri.path().starts_with("/flaky") {
                                axum::http::StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                axum::http::StatusCode::OK
                            };
                            got.push(Received {
                                path: uri.path().to_string(),
                                headers: headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect(),
                                body: body.to_vec(),
                            });
                            (status, "busy, try later")
                        }
                    },
                );
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        Receiver {
            port,
            got,
            _thread: thread,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests to `path` so far.
    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// A port nothing listens on (bound and released).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The SMTP server: Debian's aiosmtpd (`/usr/bin/python3`, installed by tests/setup.sh),
/// writing each mail to a file in `dir`; with STARTTLS and a login when certificates are given.
struct MailServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

const SMTP_USER: &str = "ferry";
const SMTP_PASSWORD: &str = "smtp-pw-0451-secret";

const MAIL_SERVER: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir = int(sys.argv[1]), sys.argv[2]
cert, key = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)
logins = []

class Handler:
    async def handle_DATA(self, server, session, envelope):
        path = os.path.join(maildir, "%d.eml" % len(os.listdir(maildir)))
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Test-Login: " + (logins[-1] if logins else b"-") + b"\r\n")
            f.write(b"X-Test-Tls: " + (b"yes" if session.ssl else b"no") + b"\r\n")
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK"

def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"ferry" and data.password == b"smtp-pw-0451-secret"
    if ok:
        logins.append(data.login)
    return AuthResult(success=ok)

kw = {}
if cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    kw = dict(tls_context=ctx, require_starttls=True, authenticator=auth, auth_require_tls=True)
c = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

impl MailServer {
    fn start(tls: Option<&common::tls::Certs>) -> MailServer {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, MAIL_SERVER).unwrap();
        let mails = dir.path().join("mails");
        std::fs::create_dir(&mails).unwrap();
        let port = dead_port();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script).arg(port.to_string()).arg(&mails);
        if let Some(c) = tls {
            cmd.arg(&c.cert).arg(&c.key);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (tests/setup.sh installs python3-aiosmtpd)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start (tests/setup.sh installs it)"
        );
        MailServer { child, port, dir }
    }

    /// The mails received so far, as text.
    fn mails(&self) -> Vec<String> {
        let dir = self.dir.path().join("mails");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A job that fails when its param `fail` is true. Its runs queue: a run triggered right after
/// the previous one ended (in the history) is never skipped while the dispatcher still counts
/// that one as going.
const FLIP: &str = r#"
local notify = NOTIFY
return {
  params = { fail = { type = "boolean", default = false } },
  overlap = "queue",
  notify = notify,
  run = function(ctx)
    if ctx.params.fail then error("the export broke") end
    return { rows = 3 }
  end,
}
"#;

fn flip(notify: &str) -> String {
    FLIP.replace("NOTIFY", notify)
}

/// A test config with these `[notify]` lines (and a `public_url` unless they set one).
fn config(notify: &str) -> String {
    let public = if notify.contains("public_url") {
        ""
    } else {
        "public_url = \"http://ferry.test:7411/\"\n"
    };
    format!(
        "[api]\ntoken = \"{TOKEN}\"\n[daemon]\nconcurrency = 2\nshutdown_grace = \"500ms\"\n[notify]\n{public}{notify}"
    )
}

/// Triggers `job` through the API and waits for the run's end; returns the run id.
fn run(api: &Api, job: &str, fail: bool) -> i64 {
    let (status, v) = api.post(
        &format!("/api/v1/jobs/{job}/runs"),
        json!({ "params": { "fail": fail } }),
    );
    assert!(status.is_success(), "{status} {v}");
    let id = v["id"].as_i64().unwrap();
    let end = api.wait_state(id, &["succeeded", "failed"]);
    assert_eq!(end["state"], if fail { "failed" } else { "succeeded" });
    id
}

/// Waits until every notification of run `id` is no longer pending; returns them.
fn settled(api: &Api, id: i64, count: usize) -> Vec<Value> {
    wait_for(&format!("the notifications of run {id}"), WAIT, || {
        let (_, v) = api.get(&format!("/api/v1/runs/{id}"));
        let list = v["notifications"].as_array()?.clone();
        (list.len() == count && list.iter().all(|n| n["state"] != "pending")).then_some(list)
    })
}

/// The run a request is about: the webhook body's `id`, or the `(run N)` of a Slack text.
fn run_of(r: &Received) -> i64 {
    let b = r.json();
    if let Some(id) = b["id"].as_i64() {
        return id;
    }
    let text = b["text"].as_str().unwrap_or_default();
    let at = text.find("(run ").expect("a run in the text") + "(run ".len();
    text[at..].split(')').next().unwrap().parse().unwrap()
}

fn hmac_hex(key: &[u8], ts: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn webhook_and_slack_get_signed_payloads_and_recovered_fires_once() {
    let rx = Receiver::start();
    let hook_token = "hook-token-7f3a9";
    let slack_token = "T000/B000/slack-token-b81c";
    let mut p = Project::with_config(&config(&format!(
        "on = [\"failure\"]\nwebhook = \"{}\"\nwebhook_secret = \"${{FERRY_TEST_HOOK_KEY}}\"\nslack = \"{}\"\n",
        rx.url(&format!("/hook/{hook_token}")),
        rx.url(&format!("/slack/{slack_token}")),
    )));
    p.set_env("FERRY_TEST_HOOK_KEY", "whsec-test-key");
    // The job's `on` replaces the default's; the channels come from [notify].
    p.script("flip", &flip(r#"{ on = { "failure", "recovered" } }"#));
    // A job that turned notifications off sends nothing, even on failure.
    p.script("quiet", &flip("false"));
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let hook = format!("/hook/{hook_token}");
    let slack = format!("/slack/{slack_token}");

    let f1 = run(&api, "flip", true);
    let f2 = run(&api, "flip", true);
    let ok1 = run(&api, "flip", false);
    let ok2 = run(&api, "flip", false);
    let q = run(&api, "quiet", true);
    for id in [f1, f2, ok1] {
        let list = settled(&api, id, 2);
        for n in &list {
            assert_eq!(n["state"], "sent", "{n}");
            assert_eq!(n["attempts"], 1, "{n}");
        }
        let targets: Vec<&str> = list.iter().map(|n| n["target"].as_str().unwrap()).collect();
        assert_eq!(
            targets,
            [
                format!("http://127.0.0.1:{}/…", rx.port),
                format!("http://127.0.0.1:{}/…", rx.port)
            ],
            "targets are shown without their tokens"
        );
    }
    // A plain success after a success notifies nothing (on = failure, recovered).
    let (_, v) = api.get(&format!("/api/v1/runs/{ok2}"));
    assert_eq!(v["notifications"], json!([]));
    let (_, v) = api.get(&format!("/api/v1/runs/{q}"));
    assert_eq!(v["notifications"], json!([]));

    // Deliveries go out concurrently: compare them in run order.
    let by_run = |mut list: Vec<Received>| {
        list.sort_by_key(run_of);
        list
    };
    let hooks = by_run(wait_for("three webhook requests", WAIT, || {
        let h = rx.at(&hook);
        (h.len() >= 3).then_some(h)
    }));
    let events: Vec<(i64, String)> = hooks
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["id"].as_i64().unwrap(),
                b["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (f1, "failure".to_string()),
            (f2, "failure".to_string()),
            (ok1, "recovered".to_string())
        ],
        "recovered fires once, after the failures"
    );
    // The payload: the run's id, job, state, times, error, summary and link.
    let b = hooks[0].json();
    assert_eq!(b["job"], "flip");
    assert_eq!(b["state"], "failed");
    assert_eq!(b["trigger"], "api");
    assert_eq!(b["error"]["code"], "run");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the export broke"),
        "{b}"
    );
    assert!(
        b["started_at"].is_string() && b["finished_at"].is_string(),
        "{b}"
    );
    assert_eq!(b["url"], format!("http://ferry.test:7411/runs/{f1}"));
    let b = hooks[2].json();
    assert_eq!(b["state"], "succeeded");
    assert_eq!(b["summary"], json!({ "rows": 3 }));
    assert_eq!(b["error"], Value::Null);
    // Each request is signed over the timestamp and the raw body.
    for r in &hooks {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-ferry-event"), r.json()["event"].as_str());
        let ts = r.header("x-ferry-timestamp").expect("a timestamp header");
        let want = format!("sha256={}", hmac_hex(b"whsec-test-key", ts, &r.body));
        assert_eq!(r.header("x-ferry-signature"), Some(want.as_str()));
        let wrong = format!("sha256={}", hmac_hex(b"another-key", ts, &r.body));
        assert_ne!(r.header("x-ferry-signature"), Some(wrong.as_str()));
    }
    // Slack gets `{"text": ...}` with the headline and a link in Slack's markup.
    let slacks = by_run(wait_for("three Slack requests", WAIT, || {
        let s = rx.at(&slack);
        (s.len() >= 3).then_some(s)
    }));
    let text = slacks[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(&format!("job flip failed (run {f1})")),
        "{text}"
    );
    assert!(text.contains("the export broke"), "{text}");
    assert!(
        text.contains(&format!("<http://ferry.test:7411/runs/{f1}|run {f1}>")),
        "{text}"
    );
    assert!(
        slacks[2].json()["text"]
            .as_str()
            .unwrap()
            .contains("recovered")
    );
    assert!(
        slacks[0].header("x-ferry-signature").is_none(),
        "Slack requests are not signed"
    );

    // `ferry runs show` lists them too.
    let shown = p.ferry(&["runs", "show", &f1.to_string()]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    assert!(shown.stdout.contains("notifications:"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("failure   webhook"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("sent (1 attempt)"),
        "{}",
        shown.stdout
    );
    let log = d.log();
    drop(d);
    for secret in [hook_token, slack_token, "whsec-test-key"] {
        assert!(
            !log.contains(secret),
            "{secret} in the daemon's log:\n{log}"
        );
        assert!(!shown.all().contains(secret), "{secret} in runs show");
    }
    assert!(log.contains("notification sent"), "{log}");
}

#[test]
fn a_receiver_that_is_down_is_retried_then_recorded_as_failed_and_runs_go_on() {
    let port = dead_port();
    let p = Project::with_config(&config(&format!(
        "on = [\"failure\", \"success\"]\nwebhook = \"http://127.0.0.1:{port}/down/secret-path\"\nattempts = 3\nbackoff = \"50ms\"\ntimeout = \"2s\"\n"
    )));
    p.script("flip", &flip("nil"));
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let failed = run(&api, "flip", true);
    // Runs go on while the delivery is being retried.
    let next: Vec<i64> = (0..3).map(|_| run(&api, "flip", false)).collect();
    let list = settled(&api, failed, 1);
    let n = &list[0];
    assert_eq!(n["state"], "failed", "{n}");
    assert_eq!(n["attempts"], 3, "{n}");
    assert_eq!(n["event"], "failure");
    assert_eq!(n["channel"], "webhook");
    assert_eq!(n["target"], format!("http://127.0.0.1:{port}/…"));
    let reason = n["reason"].as_str().unwrap();
    assert!(reason.to_lowercase().contains("connect"), "{reason}");
    assert!(!reason.contains("secret-path"), "{reason}");
    for id in next {
        let list = settled(&api, id, 1);
        assert_eq!(list[0]["event"], "success");
        assert_eq!(list[0]["state"], "failed");
    }
    let shown = p.ferry(&["runs", "show", &failed.to_string()]);
    assert!(
        shown.stdout.contains("failed after 3 attempts"),
        "{}",
        shown.stdout
    );
    let log = d.log();
    assert!(log.contains("trying again"), "{log}");
    assert!(!log.contains("secret-path"), "{log}");
}

#[test]
fn a_receiver_that_fails_once_gets_the_notification_on_the_second_attempt() {
    let rx = Receiver::start();
    let p = Project::with_config(&config(&format!(
        "webhook = \"{}\"\nbackoff = \"100ms\"\n",
        rx.url("/flaky")
    )));
    p.script("flip", &flip("nil"));
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let id = run(&api, "flip", true);
    let list = settled(&api, id, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}");
    assert_eq!(list[0]["attempts"], 2, "{list:?}");
    let got = rx.at("/flaky");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].header("x-ferry-delivery"),
        got[1].header("x-ferry-delivery"),
        "the same delivery id on each attempt"
    );
    assert!(
        d.log()
            .contains("the receiver answered 503: busy, try later"),
        "{}",
        d.log()
    );
}

#[test]
fn pending_deliveries_survive_a_restart() {
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let p = Project::with_config(&config(&format!(
        "webhook = \"http://127.0.0.1:{port}/later\"\nattempts = 50\nbackoff = \"200ms\"\ntimeout = \"2s\"\n"
    )));
    p.script("flip", &flip("nil"));
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let id = run(&api, "flip", true);
    wait_for("a failed attempt", WAIT, || {
        let (_, v) = api.get(&format!("/api/v1/runs/{id}"));
        (v["notifications"][0]["attempts"].as_u64()? >= 1).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    let (_, v) = {
        let again = Daemon::start(&p);
        let api = Api::new(&again);
        let v = api.get(&format!("/api/v1/runs/{id}"));
        drop(again);
        v
    };
    assert_eq!(v["notifications"][0]["state"], "pending", "{v}");
    // The receiver comes up; the next daemon delivers what the first one could not.
    let rx = Receiver::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let list = settled(&api, id, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}");
    let got = rx.at("/later");
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].json()["id"], id);
    assert!(
        got[0].header("x-ferry-signature").is_none(),
        "no secret, no signature"
    );
}

#[test]
fn email_over_plain_smtp_reaches_the_server() {
    let mail = MailServer::start(None);
    let p = Project::with_config(&config(&format!(
        "email = [\"ops@example.com\"]\n[notify.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"ferry <ferry@example.com>\"\n",
        mail.port
    )));
    // The job adds a recipient of its own instead of the default.
    p.script(
        "flip",
        &flip(r#"{ email = { "data@example.com", "oncall@example.com" } }"#),
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let id = run(&api, "flip", true);
    let list = settled(&api, id, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}");
    assert_eq!(list[0]["channel"], "email");
    assert_eq!(list[0]["target"], "data@example.com, oncall@example.com");
    let mails = mail.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert!(
        m.contains(&format!("Subject: [ferry] job flip failed (run {id})")),
        "{m}"
    );
    assert!(
        m.contains("data@example.com") && m.contains("oncall@example.com"),
        "{m}"
    );
    assert!(m.contains("From: ferry <ferry@example.com>"), "{m}");
    assert!(m.contains("the export broke"), "{m}");
    assert!(
        m.contains(&format!("http://ferry.test:7411/runs/{id}")),
        "{m}"
    );
    assert!(m.contains("X-Test-Tls: no"), "{m}");
}

#[test]
fn email_over_starttls_with_a_login() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = common::tls::make(certs_dir.path());
    let mail = MailServer::start(Some(&certs));
    let mut p = Project::with_config(&config(&format!(
        "on = [\"success\"]\nemail = [\"ops@example.com\"]\n[notify.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nusername = \"{SMTP_USER}\"\npassword = \"${{FERRY_TEST_SMTP_PW}}\"\nfrom = \"ferry@example.com\"\nca_file = \"{}\"\n",
        mail.port,
        certs.ca.display()
    )));
    p.set_env("FERRY_TEST_SMTP_PW", SMTP_PASSWORD);
    p.script("flip", &flip("nil"));
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let id = run(&api, "flip", false);
    let list = settled(&api, id, 1);
    assert_eq!(list[0]["state"], "sent", "{list:?}");
    assert_eq!(list[0]["event"], "success");
    let mails = mail.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("X-Test-Tls: yes"), "{}", mails[0]);
    assert!(mails[0].contains("X-Test-Login: ferry"), "{}", mails[0]);
    assert!(
        mails[0].contains(&format!("job flip succeeded (run {id})")),
        "{}",
        mails[0]
    );
    let log = d.log();
    assert!(!log.contains(SMTP_PASSWORD), "{log}");
}

#[test]
fn skipped_runs_of_a_paused_job_are_notified() {
    let rx = Receiver::start();
    let p = Project::with_config(&config(&format!("webhook = \"{}\"\n", rx.url("/skips"))));
    p.script(
        "tick",
        r#"return { schedule = "* * * * * *", notify = { on = "skipped" }, run = function() end }"#,
    );
    let d = Daemon::start(&p);
    let api = Api::new(&d);
    let (status, v) = api.post("/api/v1/jobs/tick/pause", json!({}));
    assert!(status.is_success(), "{status} {v}");
    let got = wait_for("a skipped notification", WAIT, || {
        rx.at("/skips").into_iter().next()
    });
    let b = got.json();
    assert_eq!(b["event"], "skipped");
    assert_eq!(b["state"], "skipped");
    assert_eq!(b["job"], "tick");
    assert_eq!(b["summary"]["reason"], "the job is paused");
    // Succeeded runs before the pause notified nothing (on = skipped).
    assert!(
        rx.at("/skips")
            .iter()
            .all(|r| r.json()["event"] == "skipped")
    );
}

fn load_error(p: &Project) -> String {
    let r = p.ferry(&["check"]);
    assert_ne!(r.code, 0, "accepted:\n{}", r.all());
    r.all()
}

#[test]
fn malformed_notify_settings_are_refused_at_load() {
    // ferry.toml: the error names the key and what was expected.
    for (toml, want) in [
        ("on = [\"failur\"]\n", "notify.on: unknown event \"failur\""),
        (
            "webhook = \"ftp://h/x\"\n",
            "notify.webhook: expected an http:// or https:// URL",
        ),
        (
            "webhook = \"not a url\"\n",
            "notify.webhook: not a valid URL",
        ),
        ("webhok = \"http://h/x\"\n", "unknown field `webhok`"),
        ("slack = \"http://h/x\"\nattempts = 0\n", "notify.attempts"),
        (
            "webhook = \"http://h/x\"\nbackoff = \"soon\"\n",
            "notify.backoff",
        ),
        (
            "webhook_secret = \"k\"\n",
            "notify.webhook_secret: set without `webhook`",
        ),
        (
            "email = [\"ops@example.com\"]\n",
            "notify.email: e-mail needs a mail server",
        ),
        (
            "email = [\"nobody\"]\n[notify.smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\n",
            "notify.email: \"nobody\" is not an e-mail address",
        ),
        (
            "[notify.smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"ssl\"\n",
            "notify.smtp.tls: expected one of",
        ),
        (
            "[notify.smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\nsender = \"x\"\n",
            "unknown field `sender`",
        ),
        ("[notify.smtp]\nhost = \"h\"\n", "notify.smtp.from: missing"),
        (
            "[notify.smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\nusername = \"u\"\n",
            "notify.smtp.password",
        ),
        (
            "slack = \"${FERRY_TEST_UNSET_SLACK}\"\n",
            "FERRY_TEST_UNSET_SLACK is not set",
        ),
        ("public_url = \"ferry.local\"\n", "notify.public_url"),
    ] {
        let p = Project::with_config(&config(toml));
        p.script("flip", &flip("nil"));
        let e = load_error(&p);
        assert!(e.contains(want), "{toml}: want {want:?} in:\n{e}");
        // A misspelt key is a TOML schema error, which quotes its line; a value that does not
        // check out is never repeated (it may be a URL with a token).
        if !want.starts_with("unknown field") {
            assert!(!e.contains("/x\""), "the URL is not repeated: {e}");
        }
    }
    // A job's notify key.
    for (notify, want) in [
        (
            r#"{ on = { "failure", "sometimes" } }"#,
            "key `notify.on`: unknown event \"sometimes\"",
        ),
        (
            r#"{ webhok = "http://h/x" }"#,
            "key `notify.webhok`: unknown key",
        ),
        (
            r#"{ webhook = "ftp://h/x" }"#,
            "key `notify.webhook`: expected an http:// or https:// URL",
        ),
        (
            r#"{ slack = 5 }"#,
            "key `notify.slack`: expected an http(s) URL or false",
        ),
        (
            r#"{ email = "ops@example.com" }"#,
            "key `notify.email`: e-mail needs a mail server",
        ),
        (
            r#"{ email = "ops" }"#,
            "key `notify.email`: \"ops\" is not an e-mail address",
        ),
        (r#"true"#, "key `notify`: expected a table"),
    ] {
        let p = Project::with_config(&config(""));
        p.script("flip", &flip(notify));
        let e = load_error(&p);
        assert!(
            e.contains("scripts/flip.lua") && e.contains(want),
            "{notify}: want {want:?} in:\n{e}"
        );
    }
}
