//! Notifications: when a run ends, `ferry serve` tells people — a webhook (JSON POST, signed
//! with HMAC-SHA256 when a secret is set), a Slack-compatible incoming webhook, or e-mail over
//! SMTP — on `failure`, `success`, `recovered` (the first success after failures) and
//! `skipped`, as `[notify]` in `ferry.toml` and a job's `notify` key say.
//!
//! - [`rules`]: outcomes, channels, the validated settings and a job's overrides.
//! - [`payload`]: what is sent (webhook JSON, Slack text, e-mail) and the signature.
//! - [`send`]: one attempt to one channel (reqwest, lettre).
//! - [`service`]: the daemon's notifier: bus listener, persisted queue, retries with backoff.
//!
//! Secrets (webhook and Slack URLs, the webhook key, SMTP credentials) are kept only in memory:
//! the history records a delivery's target as `scheme://host/…`, and every log line and error
//! shows that form.

pub mod payload;
pub mod rules;
pub mod send;
pub mod service;

pub use rules::{Channel, JobNotify, Outcome, Settings};
pub use service::Notifier;
