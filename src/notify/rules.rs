//! What to notify about and where: the outcomes (`failure`, `success`, `recovered`,
//! `skipped`), the channels (a webhook, a Slack-compatible incoming webhook, e-mail over SMTP),
//! the validated `[notify]` defaults of `ferry.toml`, a job's `notify` overrides, and the
//! redacted form in which a channel is shown. Plain data and checks; nothing here sends.

use std::fmt;
use std::time::Duration;

use crate::storage::Secret;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The run failed or timed out (or was interrupted), and will not be retried.
    Failure,
    /// The run succeeded.
    Success,
    /// The run succeeded and the job's previous run had failed.
    Recovered,
    /// The run was recorded as skipped (job paused, overlap).
    Skipped,
}

impl Outcome {
    /// The names used in configs and payloads.
    pub const NAMES: &'static [(&'static str, Outcome)] = &[
        ("failure", Outcome::Failure),
        ("success", Outcome::Success),
        ("recovered", Outcome::Recovered),
        ("skipped", Outcome::Skipped),
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Failure => "failure",
            Outcome::Success => "success",
            Outcome::Recovered => "recovered",
            Outcome::Skipped => "skipped",
        }
    }

    /// Parses a list of names; the error names the unknown one and the known ones.
    pub fn parse_list<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Outcome>, String> {
        let mut out = Vec::new();
        for name in names {
            let Some((_, o)) = Outcome::NAMES.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "unknown event {name:?}; expected one of {}",
                    Outcome::NAMES
                        .iter()
                        .map(|(n, _)| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if !out.contains(o) {
                out.push(*o);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URL that holds a secret (webhook and Slack URLs carry their token in the path): kept whole
/// for sending, shown only as `scheme://host[:port]/…`.
#[derive(Clone, PartialEq)]
pub struct SecretUrl {
    url: Secret,
    shown: String,
}

impl SecretUrl {
    /// Checks an `http://` or `https://` URL with a host.
    pub fn parse(text: &str) -> Result<SecretUrl, String> {
        // The error never repeats the URL: it may hold a token.
        let url = url::Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "expected an http:// or https:// URL, got a {}:// URL",
                url.scheme()
            ));
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err("expected a URL with a host".into());
        };
        let shown = match url.port() {
            Some(p) => format!("{}://{host}:{p}/…", url.scheme()),
            None => format!("{}://{host}/…", url.scheme()),
        };
        Ok(SecretUrl {
            url: Secret::new(text),
            shown,
        })
    }

    /// The URL, for the one place that sends to it.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// The redacted form, for logs, errors, the history and the API.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// A webhook: a JSON POST, signed when a secret is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Where to POST.
    pub url: SecretUrl,
    /// The HMAC-SHA256 key of the `X-Ferry-Signature` header.
    pub secret: Option<Secret>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain SMTP (a local relay, a test server): nothing is encrypted.
    None,
    /// Plain connection upgraded with STARTTLS (refused if the server does not offer it).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl Tls {
    /// The names used in `ferry.toml`.
    pub const NAMES: &'static [(&'static str, Tls)] = &[
        ("none", Tls::None),
        ("starttls", Tls::Starttls),
        ("tls", Tls::Tls),
    ];

    /// The usual port.
    pub fn default_port(self) -> u16 {
        match self {
            Tls::None => 25,
            Tls::Starttls => 587,
            Tls::Tls => 465,
        }
    }
}

/// `[notify.smtp]`: the mail server e-mail notifications go through.
#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    /// Host name (also the name the TLS certificate must carry).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connection protection.
    pub tls: Tls,
    /// Login name, with `password`.
    pub username: Option<String>,
    /// Password (shown as `***`).
    pub password: Option<Secret>,
    /// The sender (`ferry <ferry@example.com>`).
    pub from: String,
    /// PEM file of the CA(s) the server's certificate must chain to, instead of the system's.
    pub ca: Option<Vec<u8>>,
}

impl Smtp {
    /// How the server is shown: `smtp://host:port` (no credentials).
    pub fn shown(&self) -> String {
        format!("smtp://{}:{}", self.host, self.port)
    }
}

/// One place a notification goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    /// A JSON POST.
    Webhook(Webhook),
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack(SecretUrl),
    /// E-mail to these addresses through `[notify.smtp]`.
    Email(Vec<String>),
}

impl Channel {
    /// The channel's kind, as recorded: `webhook`, `slack`, `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Slack(_) => "slack",
            Channel::Email(_) => "email",
        }
    }

    /// Where it goes, without secrets (recorded in the history, shown by the API).
    pub fn target(&self) -> String {
        match self {
            Channel::Webhook(w) => w.url.shown().to_string(),
            Channel::Slack(u) => u.shown().to_string(),
            Channel::Email(to) => to.join(", "),
        }
    }
}

/// The delivery defaults: attempts and their timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    /// Attempts per notification before it is recorded as failed.
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// Limit of one attempt (connect, send, answer).
    pub timeout: Duration,
}

/// The longest delay between two attempts of a delivery.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery {
            attempts: 5,
            backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The validated `[notify]` section: defaults for every job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The outcomes notified about (default: `failure`).
    pub on: Vec<Outcome>,
    /// The default webhook.
    pub webhook: Option<Webhook>,
    /// The default Slack webhook.
    pub slack: Option<SecretUrl>,
    /// The default e-mail recipients.
    pub email: Vec<String>,
    /// The mail server.
    pub smtp: Option<Smtp>,
    /// Base of run links (`<public_url>/runs/ID`); default `http://<api listen address>`.
    pub public_url: String,
    /// Attempts and timing.
    pub delivery: Delivery,
}

/// A job's `notify` table: each key given replaces the `[notify]` default of the same name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobNotify {
    /// `notify = false`: nothing is sent for this job.
    pub off: bool,
    /// The outcomes notified about.
    pub on: Option<Vec<Outcome>>,
    /// The webhook (`Some(None)`: `webhook = false`, none for this job).
    pub webhook: Option<Option<Webhook>>,
    /// The Slack webhook (`Some(None)`: `slack = false`).
    pub slack: Option<Option<SecretUrl>>,
    /// The e-mail recipients (`Some(empty)`: `email = false`).
    pub email: Option<Vec<String>>,
}

/// What to send for a job: the outcomes and the channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The outcomes notified about.
    pub on: Vec<Outcome>,
    /// Where to.
    pub channels: Vec<Channel>,
}

impl Settings {
    /// The plan of a job: its `notify` keys over these defaults.
    pub fn plan(&self, job: Option<&JobNotify>) -> Plan {
        let empty = JobNotify::default();
        let j = job.unwrap_or(&empty);
        if j.off {
            return Plan {
                on: Vec::new(),
                channels: Vec::new(),
            };
        }
        let mut channels = Vec::new();
        if let Some(w) = j.webhook.clone().unwrap_or_else(|| self.webhook.clone()) {
            channels.push(Channel::Webhook(w));
        }
        if let Some(s) = j.slack.clone().unwrap_or_else(|| self.slack.clone()) {
            channels.push(Channel::Slack(s));
        }
        let to = j.email.clone().unwrap_or_else(|| self.email.clone());
        if !to.is_empty() && self.smtp.is_some() {
            channels.push(Channel::Email(to));
        }
        Plan {
            on: j.on.clone().unwrap_or_else(|| self.on.clone()),
            channels,
        }
    }
}

/// Checks an e-mail address (`ops@example.com`).
pub fn parse_address(text: &str) -> Result<String, String> {
    text.parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| format!("{text:?} is not an e-mail address ({e})"))
}

/// Checks a sender (`ops@example.com` or `ferry <ops@example.com>`).
pub fn parse_mailbox(text: &str) -> Result<String, String> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| text.to_string())
        .map_err(|e| format!("{text:?} is not an e-mail address or `Name <address>` ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse_and_unknown_ones_are_named() {
        assert_eq!(
            Outcome::parse_list(["failure", "recovered", "failure"]).unwrap(),
            vec![Outcome::Failure, Outcome::Recovered]
        );
        let e = Outcome::parse_list(["failur"]).unwrap_err();
        assert!(e.contains("\"failur\"") && e.contains("\"skipped\""), "{e}");
    }

    #[test]
    fn urls_are_shown_without_their_secret() {
        let u = SecretUrl::parse("https://hooks.slack.com/services/T0/B0/XXSECRET").unwrap();
        assert_eq!(u.shown(), "https://hooks.slack.com/…");
        assert!(!format!("{u:?}").contains("XXSECRET"));
        let u = SecretUrl::parse("http://127.0.0.1:8080/hook?token=abc").unwrap();
        assert_eq!(u.shown(), "http://127.0.0.1:8080/…");
        for bad in ["ftp://h/x", "not a url/x", "mailto:a@b/x"] {
            let e = SecretUrl::parse(bad).unwrap_err();
            assert!(!e.contains("/x"), "the error does not echo the URL: {e}");
        }
    }

    #[test]
    fn job_keys_replace_the_defaults_one_by_one() {
        let hook = |u: &str| Webhook {
            url: SecretUrl::parse(u).unwrap(),
            secret: None,
        };
        let s = Settings {
            on: vec![Outcome::Failure],
            webhook: Some(hook("http://a/x")),
            slack: Some(SecretUrl::parse("http://s/x").unwrap()),
            ..Settings::default()
        };
        let p = s.plan(None);
        assert_eq!(p.on, vec![Outcome::Failure]);
        assert_eq!(p.channels.len(), 2);
        let j = JobNotify {
            on: Some(vec![Outcome::Success]),
            slack: Some(None),
            webhook: Some(Some(hook("http://b/y"))),
            ..JobNotify::default()
        };
        let p = s.plan(Some(&j));
        assert_eq!(p.on, vec![Outcome::Success]);
        assert_eq!(p.channels, vec![Channel::Webhook(hook("http://b/y"))]);
        let off = JobNotify {
            off: true,
            ..JobNotify::default()
        };
        assert!(s.plan(Some(&off)).channels.is_empty());
        // E-mail needs a server.
        let j = JobNotify {
            email: Some(vec!["a@b.c".into()]),
            ..JobNotify::default()
        };
        assert!(
            !s.plan(Some(&j))
                .channels
                .iter()
                .any(|c| c.kind() == "email")
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(parse_address("ops@example.com").is_ok());
        assert!(parse_address("ops").is_err());
        assert!(parse_mailbox("ferry <ferry@example.com>").is_ok());
        assert!(parse_mailbox("ferry <nope>").is_err());
    }
}
