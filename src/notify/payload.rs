//! What a notification says: the webhook's JSON body, the Slack text, the e-mail, and the
//! webhook signature.
//!
//! The webhook body is `{"event", "id", "job", "state", "trigger", "attempt", "queued_at",
//! "started_at", "finished_at", "duration_ms", "error": {"code", "message"}, "summary", "url"}`.
//! A signed request carries `X-Ferry-Timestamp: <unix seconds>` and `X-Ferry-Signature:
//! sha256=<hex>`, the HMAC-SHA256 under the secret of `"<timestamp>.<raw body>"`, so a receiver
//! can refuse both forged and replayed requests.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::history::{RunRecord, format_time};

/// The header with the Unix time the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Ferry-Timestamp";
/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "X-Ferry-Signature";
/// The header with the event name.
pub const EVENT_HEADER: &str = "X-Ferry-Event";
/// The header with the delivery's id (the same on every attempt, for deduplication).
pub const DELIVERY_HEADER: &str = "X-Ferry-Delivery";

/// One notification about one run.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// `failure`, `success`, `recovered`, `skipped`.
    pub event: &'a str,
    /// The run, as recorded.
    pub run: &'a RunRecord,
    /// The link to the run (`<public_url>/runs/ID`).
    pub link: String,
}

impl Message<'_> {
    /// The webhook's JSON body.
    pub fn webhook_body(&self) -> Value {
        let r = self.run;
        let duration_ms = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0)),
            _ => None,
        };
        json!({
            "event": self.event,
            "id": r.id,
            "job": r.job,
            "state": r.state,
            "trigger": r.trigger_kind(),
            "attempt": r.attempt,
            "queued_at": format_time(&r.queued_at),
            "started_at": r.started_at.as_ref().map(format_time),
            "finished_at": r.finished_at.as_ref().map(format_time),
            "duration_ms": duration_ms,
            "error": r.error.as_ref().map(|e| json!({ "code": e.code, "message": e.message })),
            "summary": r.summary,
            "url": self.link,
        })
    }

    /// One line for people: `job nightly failed (run 12): the error`.
    pub fn headline(&self) -> String {
        let r = self.run;
        let what = match self.event {
            "recovered" => "recovered".to_string(),
            "skipped" => "was skipped".to_string(),
            _ => r.state.to_string().replace('_', " "),
        };
        let mut line = format!("job {} {what} (run {})", r.job, r.id);
        if let Some(e) = &r.error {
            line.push_str(": ");
            line.push_str(first_line(&e.message));
        } else if self.event == "skipped"
            && let Some(reason) = r.summary.as_ref().and_then(|s| s["reason"].as_str())
        {
            line.push_str(": ");
            line.push_str(reason);
        }
        line
    }

    /// The Slack incoming-webhook body: `{"text": ...}` with a link in Slack's markup.
    pub fn slack_body(&self) -> Value {
        let icon = match self.event {
            "failure" => ":x:",
            "skipped" => ":fast_forward:",
            _ => ":white_check_mark:",
        };
        let text = format!(
            "{icon} ferry: {} — <{}|run {}>",
            slack_escape(&self.headline()),
            self.link,
            self.run.id
        );
        json!({ "text": text })
    }

    /// The e-mail's subject.
    pub fn email_subject(&self) -> String {
        format!("[ferry] {}", first_line(&self.headline()))
    }

    /// The e-mail's plain-text body.
    pub fn email_body(&self) -> String {
        let r = self.run;
        let mut text = format!("{}\n\n", self.headline());
        text.push_str(&format!(
            "job:      {}\nrun:      {}\nstate:    {}\ntrigger:  {}\nattempt:  {}\n",
            r.job,
            r.id,
            r.state,
            r.trigger_kind(),
            r.attempt
        ));
        if let Some(t) = r.started_at {
            text.push_str(&format!("started:  {}\n", format_time(&t)));
        }
        if let Some(t) = r.finished_at {
            text.push_str(&format!("finished: {}\n", format_time(&t)));
        }
        if let Some(e) = &r.error {
            text.push_str(&format!("error ({}): {}\n", e.code, e.message));
        }
        if let Some(s) = &r.summary {
            text.push_str(&format!("summary:  {s}\n"));
        }
        text.push_str(&format!("\n{}\n", self.link));
        text
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Slack's markup reserves `&`, `<` and `>`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `X-Ferry-Signature` value of a body sent at `timestamp` (Unix seconds):
/// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{RunErrorInfo, RunState};

    fn run() -> RunRecord {
        let mut r: RunRecord = serde_json::from_value(json!({
            "id": 7, "job": "nightly", "state": "failed", "trigger": {"kind": "cron"},
            "params": {}, "attempt": 1, "queued_at": "2026-01-02T03:04:05.000Z", "cancel_requested": false
        }))
        .unwrap();
        r.state = RunState::Failed;
        r.error = Some(RunErrorInfo {
            code: crate::history::ErrorCode::Run,
            message: "scripts/nightly.lua:3: boom <&>\nmore".into(),
            traceback: Some("stack".into()),
        });
        r
    }

    #[test]
    fn bodies_carry_the_run_and_the_link() {
        let r = run();
        let m = Message {
            event: "failure",
            run: &r,
            link: "http://ferry.local/runs/7".into(),
        };
        let b = m.webhook_body();
        assert_eq!(b["event"], "failure");
        assert_eq!(b["id"], 7);
        assert_eq!(b["job"], "nightly");
        assert_eq!(b["state"], "failed");
        assert_eq!(b["trigger"], "cron");
        assert_eq!(b["error"]["code"], "run");
        assert_eq!(b["url"], "http://ferry.local/runs/7");
        assert!(b["error"].get("traceback").is_none());
        let s = m.slack_body()["text"].as_str().unwrap().to_string();
        assert!(s.contains("boom &lt;&amp;&gt;"), "{s}");
        assert!(s.contains("<http://ferry.local/runs/7|run 7>"), "{s}");
        assert_eq!(
            m.email_subject(),
            "[ferry] job nightly failed (run 7): scripts/nightly.lua:3: boom <&>"
        );
        assert!(m.email_body().contains("http://ferry.local/runs/7"));
    }

    #[test]
    fn signature_matches_openssl() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'key'
        assert_eq!(
            sign(b"key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
