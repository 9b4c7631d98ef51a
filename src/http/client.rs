//! The HTTP client of scripts: one per VM, on the shared storage runtime (every wait polls the
//! run's interrupt, so a cancel or timeout stops a request at once). Host names are resolved by
//! a resolver that drops the addresses the [`HttpPolicy`] refuses, so what is checked is what is
//! connected to; redirects are checked hop by hop. No proxy from the environment is used (it
//! would bypass both checks).
//!
//! A request is sent, retried on a failure to connect, a timeout waiting for the answer, or a
//! status that says "try again" (408, 429, 500, 502, 503, 504) up to `retries` times with an
//! exponential backoff (or the server's `Retry-After`), and its response handed back with its
//! body unread: the caller reads it in chunks, into memory or into a store writer.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use super::policy::{HttpPolicy, Refusal};
use crate::cancel::Interrupt;
use crate::storage::runtime_handle;

/// How long connecting (DNS, TCP, TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 10;
/// The longest wait between retries, whatever the backoff or `Retry-After` ask for.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(120);
/// Bytes of an error response's body quoted in the error.
const EXCERPT: usize = 300;
/// Size of the chunks a streamed request body is read in.
const UPLOAD_CHUNK: usize = 256 << 10;

/// An error of an HTTP request. Messages name the method and the URL (without its query and
/// credentials) and, for a status, quote the start of the response body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A bad URL, method, header or option.
    #[error("{0}")]
    Invalid(String),
    /// Refused by the `[http]` policy.
    #[error("{0}")]
    Denied(String),
    /// The server could not be reached.
    #[error("{what}: cannot connect: {message}")]
    Unreachable {
        /// `GET https://host/path`.
        what: String,
        /// Why.
        message: String,
    },
    /// A time limit passed.
    #[error("{what}: {message}")]
    Timeout {
        /// `GET https://host/path`.
        what: String,
        /// Which limit.
        message: String,
    },
    /// The server answered with a status the script did not accept.
    #[error("{what}: HTTP {status}{excerpt}")]
    Status {
        /// `GET https://host/path`.
        what: String,
        /// The status code.
        status: u16,
        /// `: <start of the body>`, or empty.
        excerpt: String,
    },
    /// Sending or receiving bytes failed.
    #[error("{what}: {message}")]
    Io {
        /// `GET https://host/path`.
        what: String,
        /// Why.
        message: String,
    },
    /// A response body larger than what may be held in memory.
    #[error("{0}")]
    TooLarge(String),
    /// The run is being stopped.
    #[error("{0}: stopped (the run is being cancelled or timed out)")]
    Interrupted(String),
}

impl HttpError {
    /// The status of an [`HttpError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A URL as messages show it: scheme, host, port and path, without credentials or query (both
/// often carry secrets).
pub fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// What a request sends.
pub enum RequestBody {
    /// Nothing.
    Empty,
    /// Bytes in memory (a string or JSON).
    Bytes(Bytes),
    /// A stream read in chunks while it is sent (a store reader): never held whole in memory,
    /// and therefore never retried.
    Stream(Box<dyn Read + Send>),
}

/// One request.
pub struct Request {
    /// The method.
    pub method: Method,
    /// The URL, query included.
    pub url: Url,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: RequestBody,
    /// The limit on the whole exchange, body included; `None`: only the run's own limit.
    pub timeout: Option<Duration>,
    /// The longest wait for the answer once the request is sent, and between two chunks of it.
    pub idle_timeout: Duration,
    /// Tries after the first.
    pub retries: u32,
    /// The wait before the first retry, doubled for each next one.
    pub backoff: Duration,
    /// Statuses that are an answer rather than an error (besides 2xx): never retried.
    pub accept: Vec<u16>,
}

/// A retry about to happen, for the run's log.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// `GET https://host/path`.
    pub what: String,
    /// Which retry this is (1-based).
    pub attempt: u32,
    /// Of how many.
    pub of: u32,
    /// Why the previous try failed.
    pub reason: String,
    /// How long until the retry.
    pub wait: Duration,
}

/// A response whose body is still to be read.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names in lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The URL that answered (after redirects).
    pub url: Url,
    /// The `Content-Length`, when the server sent one.
    pub length: Option<u64>,
    what: String,
    inner: reqwest::Response,
    idle: Duration,
    interrupt: Interrupt,
}

impl Response {
    /// The next chunk of the body, `None` at its end.
    pub fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        let idle = self.idle;
        let what = self.what.clone();
        let fut = async { tokio::time::timeout(idle, self.inner.chunk()).await };
        match wait(fut, &self.interrupt, &what)? {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(classify(&what, &e)),
            Err(_) => Err(HttpError::Timeout {
                what,
                message: format!("no data for {} while reading the response", show(idle)),
            }),
        }
    }

    /// `GET https://host/path`, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Reads up to [`EXCERPT`] bytes of the body, for an error message: `: <text>` or empty.
    pub fn excerpt(&mut self) -> String {
        let mut buf = Vec::new();
        while buf.len() < EXCERPT {
            match self.chunk() {
                Ok(Some(c)) => buf.extend_from_slice(&c),
                _ => break,
            }
        }
        excerpt_of(&buf)
    }

    /// The error for this response's status, quoting its body.
    pub fn into_status_error(mut self) -> HttpError {
        let excerpt = self.excerpt();
        HttpError::Status {
            what: self.what.clone(),
            status: self.status,
            excerpt,
        }
    }
}

fn excerpt_of(buf: &[u8]) -> String {
    let text = String::from_utf8_lossy(&buf[..buf.len().min(EXCERPT)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = one_line.trim();
    if t.is_empty() {
        String::new()
    } else if buf.len() > EXCERPT {
        format!(": {t}…")
    } else {
        format!(": {t}")
    }
}

/// Resolves host names and keeps only the addresses the policy allows.
struct CheckedResolver {
    policy: Arc<HttpPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let verdict = policy.check_host(&host)?;
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let mut kept = Vec::new();
            for a in found {
                match policy.check_addr(&host, a.ip(), verdict) {
                    Ok(()) => kept.push(a),
                    Err(r) => refused = Some(r),
                }
            }
            match (kept.is_empty(), refused) {
                (true, Some(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(format!("{host} resolves to no address").into()),
                (false, _) => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// The client of one VM.
pub struct Client {
    inner: reqwest::Client,
    policy: Arc<HttpPolicy>,
    interrupt: Interrupt,
}

impl Client {
    /// A client applying `policy`, whose waits give up when `interrupt` fires.
    pub fn new(policy: HttpPolicy, interrupt: Interrupt) -> Result<Client, HttpError> {
        // rustls needs a process-wide crypto provider when more than one is compiled in; the
        // Redis client installs the same one, whichever comes first wins.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let policy = Arc::new(policy);
        let p = policy.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let refusal = match attempt.url().host_str() {
                None => Some(Refusal(format!(
                    "redirect to {} has no host",
                    shown_url(attempt.url())
                ))),
                Some(h) => p.check_host(h).err(),
            };
            match refusal {
                Some(r) => attempt.error(r),
                None => attempt.follow(),
            }
        });
        let inner = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirects)
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Invalid(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            inner,
            policy,
            interrupt,
        })
    }

    /// Sends `req`, retrying as it asks, and returns the response whose status is 2xx or
    /// accepted, with its body unread; any other status is an [`HttpError::Status`].
    pub fn send(
        &self,
        req: Request,
        mut on_retry: impl FnMut(&RetryNotice),
    ) -> Result<Response, HttpError> {
        let what = format!("{} {}", req.method, shown_url(&req.url));
        match req.url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(HttpError::Invalid(format!(
                    "{what}: scheme {other:?} is not supported; expected http or https"
                )));
            }
        }
        let host = req
            .url
            .host_str()
            .ok_or_else(|| HttpError::Invalid(format!("{what}: the URL has no host")))?;
        self.policy
            .check_host(host)
            .map_err(|r| HttpError::Denied(format!("{what}: {r}")))?;
        if matches!(req.body, RequestBody::Stream(_)) && req.retries > 0 {
            return Err(HttpError::Invalid(format!(
                "{what}: `retries` cannot be used with a Reader body (it is read once, as it is \
                 sent); send a string, or retry the whole step in the script"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &req.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                HttpError::Invalid(format!("{what}: header name {k:?} is not valid"))
            })?;
            let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                HttpError::Invalid(format!(
                    "{what}: the value of header {k:?} is not valid (control characters?)"
                ))
            })?;
            headers.append(name, value);
        }
        let Request {
            method,
            url,
            body,
            timeout,
            idle_timeout,
            retries,
            backoff,
            accept,
            ..
        } = req;
        let mut body = Some(body);
        let mut attempt = 0u32;
        loop {
            let this_body = match &body {
                Some(RequestBody::Bytes(b)) => RequestBody::Bytes(b.clone()),
                Some(RequestBody::Empty) => RequestBody::Empty,
                _ => body.take().unwrap_or(RequestBody::Empty),
            };
            let mut rb = self
                .inner
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(t) = timeout {
                rb = rb.timeout(t);
            }
            let result = self.try_once(rb, this_body, idle_timeout, &what);
            let (reason, retry_after) = match result {
                Ok(resp) => {
                    let status = resp.status;
                    if (200..300).contains(&status) || accept.contains(&status) {
                        return Ok(resp);
                    }
                    if !retryable(status) || attempt >= retries {
                        return Err(resp.into_status_error());
                    }
                    let after = retry_after(&resp.headers);
                    let mut resp = resp;
                    (format!("HTTP {status}{}", resp.excerpt()), after)
                }
                Err(e @ (HttpError::Unreachable { .. } | HttpError::Timeout { .. }))
                    if attempt < retries =>
                {
                    (e.to_string(), None)
                }
                Err(e) => return Err(e),
            };
            attempt += 1;
            let wait = retry_after
                .unwrap_or_else(|| backoff.saturating_mul(1 << (attempt - 1).min(16)))
                .min(MAX_RETRY_WAIT);
            on_retry(&RetryNotice {
                what: what.clone(),
                attempt,
                of: retries,
                reason,
                wait,
            });
            self::wait(
                async { tokio::time::sleep(wait).await },
                &self.interrupt,
                &what,
            )?;
        }
    }

    fn try_once(
        &self,
        rb: reqwest::RequestBuilder,
        body: RequestBody,
        idle: Duration,
        what: &str,
    ) -> Result<Response, HttpError> {
        let rt = runtime_handle().map_err(|e| HttpError::Io {
            what: what.into(),
            message: e.to_string(),
        })?;
        let (rb, pump) = match body {
            RequestBody::Empty => (rb, None),
            RequestBody::Bytes(b) => (rb.body(b), None),
            RequestBody::Stream(r) => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                (rb.body(reqwest::Body::wrap_stream(stream)), Some((r, tx)))
            }
        };
        let task = rt.spawn(rb.send());
        if let Some((mut reader, tx)) = pump {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            loop {
                crate::cancel::check().map_err(|_| HttpError::Interrupted(what.into()))?;
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let message = format!("reading the request body failed: {e}");
                        // The request must not complete with a truncated body.
                        let _ = wait(
                            tx.send(Err(std::io::Error::other(message.clone()))),
                            &self.interrupt,
                            what,
                        );
                        task.abort();
                        return Err(HttpError::Io {
                            what: what.into(),
                            message,
                        });
                    }
                };
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                match wait(
                    async { tokio::time::timeout(idle, tx.send(Ok(chunk))).await },
                    &self.interrupt,
                    what,
                )? {
                    Ok(Ok(())) => {}
                    // The request ended early (the server closed or answered): its outcome says
                    // why.
                    Ok(Err(_)) => break,
                    Err(_) => {
                        task.abort();
                        return Err(HttpError::Timeout {
                            what: what.into(),
                            message: format!(
                                "the server took no data for {} while the body was sent",
                                show(idle)
                            ),
                        });
                    }
                }
            }
        }
        // Timers are made inside the async blocks: they need the runtime's context.
        let answer = wait(
            async { tokio::time::timeout(idle, task).await },
            &self.interrupt,
            what,
        )?;
        let resp = match answer {
            Err(_) => {
                return Err(HttpError::Timeout {
                    what: what.into(),
                    message: format!("no answer within {}", show(idle)),
                });
            }
            Ok(Err(join)) => {
                return Err(HttpError::Io {
                    what: what.into(),
                    message: format!("the request task failed: {join}"),
                });
            }
            Ok(Ok(Err(e))) => return Err(classify(what, &e)),
            Ok(Ok(Ok(r))) => r,
        };
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(Response {
            status: resp.status().as_u16(),
            headers,
            url: resp.url().clone(),
            length: resp.content_length(),
            what: what.into(),
            inner: resp,
            idle,
            interrupt: self.interrupt.clone(),
        })
    }
}

/// Statuses that ask to try again later.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (the HTTP-date form is read too).
fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let v = headers.iter().find(|(k, _)| k == "retry-after")?.1.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let d = at.signed_duration_since(chrono::Utc::now()).to_std().ok()?;
    Some(d)
}

/// Blocks on `fut` on the shared runtime, giving up when the run is being stopped.
fn wait<F: std::future::Future>(
    fut: F,
    interrupt: &Interrupt,
    what: &str,
) -> Result<F::Output, HttpError> {
    crate::storage::block_on_interruptible(fut, interrupt).map_err(|e| match e {
        None => HttpError::Interrupted(what.into()),
        Some(io) => HttpError::Io {
            what: what.into(),
            message: io.to_string(),
        },
    })
}

/// The error of a failed exchange, by what failed: the policy (found in the error's sources),
/// connecting, a time limit, or the transfer.
fn classify(what: &str, e: &reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut deepest = e.to_string();
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refusal>() {
            return HttpError::Denied(format!("{what}: {r}"));
        }
        deepest = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        HttpError::Timeout {
            what: what.into(),
            message: "the request's `timeout` passed".into(),
        }
    } else if e.is_connect() {
        HttpError::Unreachable {
            what: what.into(),
            message: deepest,
        }
    } else if e.is_redirect() {
        HttpError::Io {
            what: what.into(),
            message: format!("redirect refused: {deepest}"),
        }
    } else if e.is_builder() {
        HttpError::Invalid(format!("{what}: {deepest}"))
    } else {
        HttpError::Io {
            what: what.into(),
            message: deepest,
        }
    }
}

/// A duration as options are written: `60s`, `1500ms`.
fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Whether `s` is a method this client sends.
pub fn method(s: &str) -> Option<Method> {
    let upper = s.to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
            Method::from_bytes(upper.as_bytes()).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        let u = Url::parse("https://user:pw@example.com:8443/a/b?token=s3cret#x").unwrap();
        assert_eq!(shown_url(&u), "https://example.com:8443/a/b");
    }

    #[test]
    fn excerpts_are_one_line_and_short() {
        assert_eq!(excerpt_of(b""), "");
        assert_eq!(excerpt_of(b"  not\nfound \n"), ": not found");
        let long = vec![b'x'; 1000];
        let e = excerpt_of(&long);
        assert!(e.ends_with('…') && e.len() < 320, "{e}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let h = |v: &str| vec![("retry-after".to_string(), v.to_string())];
        assert_eq!(retry_after(&h("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&h("soon")), None);
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = retry_after(&h(&later)).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(25),
            "{d:?}"
        );
        assert_eq!(retry_after(&[]), None);
    }

    #[test]
    fn methods_are_checked() {
        assert_eq!(method("get"), Some(Method::GET));
        assert_eq!(method("Delete"), Some(Method::DELETE));
        assert_eq!(method("BREW"), None);
    }
}
