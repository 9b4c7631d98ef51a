//! A Redis server to reach: URL and options, the redacted label, connecting (TCP, TLS, unix).

use super::*;

/// A Redis server to connect to: parsed URL and options, with a label safe to show.
#[derive(Clone)]
pub struct RedisTarget {
    pub(super) info: redis::ConnectionInfo,
    pub(super) ca: Option<Vec<u8>>,
    pub(super) label: String,
    pub(super) connect_timeout: Duration,
    pub(super) timeout: Duration,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl RedisTarget {
    /// Parses `url` (`redis://[user:password@]host[:port][/db]` or `redis+unix:///path`) and
    /// applies `opts` on top of it.
    pub fn new(url: &str, opts: &RedisOptions) -> Result<RedisTarget, RedisError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            RedisError::Config(format!(
                "the URL is not valid ({e}); expected redis://[user:password@]host[:port][/db]"
            ))
        })?;
        match parsed.scheme() {
            "redis" | "rediss" | "redis+unix" | "unix" => {}
            other => {
                return Err(RedisError::Config(format!(
                    "unsupported URL scheme `{other}`; expected redis://[user:password@]host[:port][/db] (rediss:// for TLS)"
                )));
            }
        }
        // The client's own message may quote the URL, password included: not shown.
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| {
            RedisError::Config(
                "the URL is not valid; expected redis://[user:password@]host[:port][/db]".into(),
            )
        })?;
        let mut settings = info.redis_settings().clone();
        if let Some(p) = &opts.password {
            settings = settings.set_password(p);
        }
        if let Some(u) = &opts.username {
            settings = settings.set_username(u);
        }
        if let Some(db) = opts.db {
            if db < 0 {
                return Err(RedisError::Config(format!(
                    "db must be a database number ≥ 0, got {db}"
                )));
            }
            settings = settings.set_db(db);
        }
        let info = info.set_redis_settings(settings);
        let label = label_of(&info);
        if opts.ca.is_some() && !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            return Err(RedisError::Config(format!(
                "a CA certificate is for TLS connections; use rediss:// instead of {label}"
            )));
        }
        Ok(RedisTarget {
            info,
            ca: opts.ca.clone(),
            label,
            connect_timeout: opts.connect_timeout,
            timeout: opts.timeout,
        })
    }

    /// The target without credentials: `redis://host:port/db`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The database selected after connecting.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    /// The password in use, if any: for the caller to redact.
    pub fn password(&self) -> Option<&str> {
        self.info.redis_settings().password()
    }

    /// Opens a connection: connects, authenticates and selects the database.
    pub fn connect(&self) -> Result<RedisConn, RedisError> {
        let client = if matches!(self.info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            // rustls needs a process-wide crypto provider; a second install is refused, harmlessly.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            match &self.ca {
                Some(ca) => redis::Client::build_with_tls(
                    self.info.clone(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                ),
                None => redis::Client::open(self.info.clone()),
            }
        } else {
            redis::Client::open(self.info.clone())
        }
        .map_err(|e| self.connect_err(&e))?;
        let con = client
            .get_connection_with_timeout(self.connect_timeout)
            .map_err(|e| self.connect_err(&e))?;
        con.set_read_timeout(Some(self.timeout))
            .and_then(|()| con.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.connect_err(&e))?;
        Ok(RedisConn {
            con,
            target: self.clone(),
            db: self.db(),
        })
    }

    pub(super) fn connect_err(&self, e: &redis::RedisError) -> RedisError {
        RedisError::Connect {
            target: self.label.clone(),
            message: describe(e, &self.label),
        }
    }
}
