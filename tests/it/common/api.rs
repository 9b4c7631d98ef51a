//! A client of a test daemon's HTTP API (bearer token [`TOKEN`], which the tests' configs set).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::Value;

use super::{Daemon, wait_for};

/// The API token of the test configs.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A client of one daemon.
pub struct Api {
    /// The HTTP client.
    pub http: Client,
    /// The daemon's base URL.
    pub base: String,
}

impl Api {
    /// A client of `d`.
    pub fn new(d: &Daemon) -> Api {
        Api {
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: d.url.clone(),
        }
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        let s = r.status();
        (s, r.json().unwrap_or(Value::Null))
    }
    pub fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .unwrap();
        let s = r.status();
        (s, r.json().unwrap_or(Value::Null))
    }
    /// GET a text resource (`/metrics`).
    pub fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .text()
            .unwrap()
    }
    /// One sample of a Prometheus metric without labels from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.text("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }
    pub fn delete(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        let s = r.status();
        (s, r.json().unwrap_or(Value::Null))
    }
    pub fn wait_state(&self, id: i64, states: &[&str]) -> Value {
        wait_for(
            &format!("run {id} in {states:?}"),
            // Generous: a loaded machine (parallel test binaries) is slow, not wrong.
            Duration::from_secs(90),
            || {
                let (_, v) = self.get(&format!("/api/v1/runs/{id}"));
                states
                    .contains(&v["state"].as_str().unwrap_or(""))
                    .then_some(v)
            },
        )
    }
}

/// A Server-Sent Events stream read event by event.
pub struct EventStream {
    lines: std::io::Lines<std::io::BufReader<reqwest::blocking::Response>>,
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    /// `event:` (the type).
    pub event: String,
    /// `id:`, if any.
    pub id: Option<String>,
    /// `data:` as JSON.
    pub data: Value,
}

impl Api {
    /// Opens an event stream (GET with `Accept: text/event-stream`); panics unless it is one.
    pub fn events(&self, path: &str) -> EventStream {
        self.events_with(path, TOKEN)
    }

    /// Opens an event stream with this token.
    pub fn events_with(&self, path: &str, token: &str) -> EventStream {
        let r = Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .get(self.url(path))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        use std::io::BufRead;
        EventStream {
            lines: std::io::BufReader::new(r).lines(),
        }
    }
}

impl EventStream {
    /// The next event (comments and keep-alives skipped); `None` when the stream ended.
    pub fn next_event(&mut self) -> Option<Sse> {
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        loop {
            let line = self.lines.next()?.ok()?;
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                return Some(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                });
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }

    /// Events until (and with) the first one `stop` accepts.
    pub fn until(&mut self, stop: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event() {
            let done = stop(&e);
            out.push(e);
            if done {
                return out;
            }
        }
        panic!("the stream ended before the awaited event: {out:?}");
    }
}
