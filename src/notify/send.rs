//! Sending one notification to one channel: a webhook POST (signed when a secret is set), a
//! Slack-compatible incoming webhook, an e-mail through the configured SMTP server (lettre).
//! Errors say what failed without the URL (it holds a token) or the credentials.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, Tls as LettreTls, TlsParameters,
};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::payload::{
    DELIVERY_HEADER, EVENT_HEADER, Message, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign,
};
use super::rules::{Channel, Smtp, Tls};

/// Why a delivery attempt failed (the reason recorded with the notification).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver could not be reached or did not answer in time.
    #[error("{0}")]
    Request(String),
    /// The receiver answered with an error status.
    #[error("the receiver answered {status}{}", excerpt(.body))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The mail could not be built (an address the server config allowed but lettre refused).
    #[error("cannot build the e-mail: {0}")]
    Mail(String),
    /// The mail server refused or could not be reached.
    #[error("SMTP {server}: {message}")]
    Smtp {
        /// `smtp://host:port`.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// An e-mail channel without `[notify.smtp]`.
    #[error("no mail server is configured ([notify.smtp] in ferry.toml)")]
    NoSmtp,
}

fn excerpt(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        return String::new();
    }
    let cut: String = t.chars().take(200).collect();
    format!(": {cut}")
}

/// The text of an error and its causes, `a: b: c`, with no URL in it.
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "no answer in time".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Sends notifications. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    timeout: Duration,
}

impl Sender {
    /// A sender whose attempts each take at most `timeout`.
    pub fn new(timeout: Duration) -> Sender {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry the body elsewhere; receivers answer directly.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Sender { http, timeout }
    }

    /// One attempt of delivery `id` of `msg` to `channel`.
    pub async fn send(
        &self,
        id: i64,
        channel: &Channel,
        smtp: Option<&Smtp>,
        msg: &Message<'_>,
    ) -> Result<(), SendError> {
        match channel {
            Channel::Webhook(w) => {
                let body = serde_json::to_vec(&msg.webhook_body()).unwrap_or_default();
                let mut req = self
                    .http
                    .post(w.url.expose())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(EVENT_HEADER, msg.event)
                    .header(DELIVERY_HEADER, id.to_string());
                if let Some(secret) = &w.secret {
                    let ts = chrono::Utc::now().timestamp();
                    req = req.header(TIMESTAMP_HEADER, ts.to_string()).header(
                        SIGNATURE_HEADER,
                        sign(secret.expose().as_bytes(), ts, &body),
                    );
                }
                self.post(req.body(body)).await
            }
            Channel::Slack(url) => {
                let req = self.http.post(url.expose()).json(&msg.slack_body());
                self.post(req).await
            }
            Channel::Email(to) => {
                let smtp = smtp.ok_or(SendError::NoSmtp)?;
                self.mail(smtp, to, msg).await
            }
        }
    }

    async fn post(&self, req: reqwest::RequestBuilder) -> Result<(), SendError> {
        let resp = req.send().await.map_err(|e| SendError::Request(chain(e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(SendError::Status {
            status: status.as_u16(),
            body,
        })
    }

    async fn mail(&self, smtp: &Smtp, to: &[String], msg: &Message<'_>) -> Result<(), SendError> {
        let bad = |e: &dyn std::fmt::Display| SendError::Mail(e.to_string());
        let from: Mailbox = smtp.from.parse().map_err(|e| bad(&e))?;
        let mut builder = lettre::Message::builder()
            .from(from)
            .subject(msg.email_subject())
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        for addr in to {
            builder = builder.to(addr.parse().map_err(|e| bad(&e))?);
        }
        let mail = builder.body(msg.email_body()).map_err(|e| bad(&e))?;
        let smtp_err = |e: &dyn std::fmt::Display| SendError::Smtp {
            server: smtp.shown(),
            message: e.to_string(),
        };
        let tls_params = || -> Result<TlsParameters, SendError> {
            let mut b = TlsParameters::builder(smtp.host.clone());
            if let Some(pem) = &smtp.ca {
                let cert = Certificate::from_pem(pem).map_err(|e| smtp_err(&e))?;
                b = b
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            b.build_rustls().map_err(|e| smtp_err(&e))
        };
        let tls = match smtp.tls {
            Tls::None => LettreTls::None,
            Tls::Starttls => LettreTls::Required(tls_params()?),
            Tls::Tls => LettreTls::Wrapper(tls_params()?),
        };
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let (Some(user), Some(pw)) = (&smtp.username, &smtp.password) {
            transport =
                transport.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
        }
        let transport = transport.build();
        // The whole exchange is bounded too, not only each read.
        match tokio::time::timeout(self.timeout * 3, transport.send(mail)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(smtp_err(&e)),
            Err(_) => Err(smtp_err(&"no answer in time")),
        }
    }
}
