//! Real Redis servers for tests: Debian's `redis-server`, one per test, on a free port, with
//! persistence off (no RDB snapshots, no AOF) and its own temp dir for `SAVE`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
    /// The `requirepass` password, if any.
    pub password: Option<String>,
    /// With TLS: the CA certificate (PEM) the server's certificate is signed by.
    pub ca: Option<Vec<u8>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A port nothing listens on (bound and released).
pub fn dead_port() -> u16 {
    free_port()
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> RedisServer {
        Self::start_with(None)
    }

    /// Starts a server that loads `rdb` as its dump at start-up.
    pub fn start_loading(rdb: &Path) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        std::fs::copy(rdb, dir.path().join("dump.rdb")).expect("copy the dump");
        Self::spawn(dir, None, &[])
    }

    /// Starts a server, with `requirepass` when a password is given.
    pub fn start_with(password: Option<&str>) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        Self::spawn(dir, password, &[])
    }

    /// Starts a server that speaks TLS only, with a certificate for 127.0.0.1 signed by a CA of
    /// its own (see [`RedisServer::ca`]).
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let certs = super::tls::make(dir.path());
        let ca = std::fs::read(&certs.ca).unwrap();
        let cert = certs.cert.display().to_string();
        let key = certs.key.display().to_string();
        let ca_file = certs.ca.display().to_string();
        Self::spawn_tls(dir, ca, &cert, &key, &ca_file)
    }

    fn spawn_tls(
        dir: tempfile::TempDir,
        ca: Vec<u8>,
        cert: &str,
        key: &str,
        ca_file: &str,
    ) -> RedisServer {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port"])
            .arg(port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "",
            ])
            .args([
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                ca_file,
            ])
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut server = RedisServer {
            child: Some(child),
            dir,
            port,
            password: None,
            ca: Some(ca),
        };
        match server.wait_ready() {
            Ok(()) => server,
            Err(e) => panic!("redis-server with TLS: {e}"),
        }
    }

    /// Waits until the server answers PING; `Err` when it exits or stays silent for 10 s.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut con) = self.try_con()
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("exited with {status} (port {} taken?)", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("did not answer on port {} within 10 s", self.port))
    }

    /// Starts a server with a password (or none) and extra `redis-server` arguments.
    pub fn start_with_args(password: Option<&str>, args: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        Self::spawn(dir, password, args)
    }

    fn spawn(mut dir: tempfile::TempDir, password: Option<&str>, extra: &[&str]) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(["--dbfilename", "dump.rdb", "--daemonize", "no"])
                .args(["--logfile", ""])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(p) = password {
                cmd.arg("--requirepass").arg(p);
            }
            cmd.args(extra);
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => panic!(
                    "cannot start redis-server ({e}); the Redis tests need Debian's redis-server: run tests/setup.sh"
                ),
            };
            let mut server = RedisServer {
                child: Some(child),
                dir,
                port,
                password: password.map(str::to_owned),
                ca: None,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
            server.kill();
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("redis-server did not start: {last_err}");
    }

    fn try_con(&self) -> redis::RedisResult<redis::Connection> {
        self.client(0)?.get_connection()
    }

    fn client(&self, db: i64) -> redis::RedisResult<redis::Client> {
        match &self.ca {
            Some(ca) => redis::Client::build_with_tls(
                self.url_with_password(db),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(self.url_with_password(db)),
        }
    }

    /// A connection to database 0.
    pub fn con(&self) -> redis::Connection {
        self.con_db(0)
    }

    /// A connection to database `db`.
    pub fn con_db(&self, db: i64) -> redis::Connection {
        self.client(db)
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis")
    }

    /// `redis://127.0.0.1:PORT/DB` (`rediss://` with TLS) without credentials.
    pub fn url(&self, db: i64) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/{db}", self.port)
    }

    /// The URL with the password in it, when there is one.
    pub fn url_with_password(&self, db: i64) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None if self.ca.is_some() => self.url(db),
            None => self.url(db),
        }
    }

    /// Runs `SAVE` and returns the dump file's path.
    pub fn save(&self) -> PathBuf {
        let mut con = self.con();
        let _: () = redis::cmd("SAVE").query(&mut con).expect("SAVE");
        self.dir.path().join("dump.rdb")
    }

    /// The server's working dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fills databases 0 and 3 with every value type in small and large encodings, some with TTLs.
/// Returns the number of keys written.
pub fn populate(server: &RedisServer, scale: usize) -> usize {
    let mut con = server.con();
    let mut p = redis::pipe();
    p.cmd("SET").arg("s:short").arg("hello");
    p.cmd("SET").arg("s:int").arg("12345");
    p.cmd("SET").arg("s:long").arg("abc".repeat(100));
    p.cmd("SET").arg("s:bin").arg(vec![0u8, 255, 10, 13, 0]);
    p.cmd("SET").arg(vec![0xffu8, 0x00, b'k']).arg("binary key");
    p.cmd("SET").arg("s:ttl").arg("soon").arg("PX").arg(600_000);
    p.cmd("RPUSH").arg("l:small").arg(&["a", "b", "c"]);
    let big: Vec<String> = (0..scale).map(|i| format!("item-{i}")).collect();
    p.cmd("RPUSH").arg("l:big").arg(&big);
    p.cmd("SADD").arg("set:ints").arg(&[1, 2, 3, 40000]);
    p.cmd("SADD").arg("set:small").arg(&["x", "y"]);
    p.cmd("SADD").arg("set:big").arg(&big);
    p.cmd("ZADD")
        .arg("z:small")
        .arg(&[(1.5, "a"), (2.0, "b"), (f64::INFINITY, "inf")]);
    let scored: Vec<(f64, String)> = (0..scale)
        .map(|i| (i as f64 / 3.0, format!("m{i}")))
        .collect();
    p.cmd("ZADD").arg("z:big").arg(&scored);
    p.cmd("HSET")
        .arg("h:small")
        .arg(&[("f1", "v1"), ("f2", "v2")]);
    let fields: Vec<(String, String)> = (0..scale)
        .map(|i| (format!("f{i}"), format!("value {i}")))
        .collect();
    p.cmd("HSET").arg("h:big").arg(&fields);
    p.cmd("PEXPIRE").arg("h:big").arg(3_600_000);
    for i in 0..5 {
        p.cmd("XADD").arg("st:events").arg("*").arg("n").arg(i);
    }
    p.cmd("XGROUP")
        .arg("CREATE")
        .arg("st:events")
        .arg("g1")
        .arg("0");
    p.cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g1")
        .arg("c1")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg("st:events")
        .arg(">");
    p.query::<()>(&mut con).expect("populate db 0");
    let mut con3 = server.con_db(3);
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("db3:a")
        .arg("in db 3")
        .cmd("HSET")
        .arg("db3:h")
        .arg("k")
        .arg("v")
        .query(&mut con3)
        .expect("populate db 3");
    18 + 2
}

/// A key's content in a comparable form: type, value, and whether it has a TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyContent {
    pub kind: String,
    pub value: String,
    /// Absolute expiry in Unix milliseconds (`PEXPIRETIME`), -1 without expiry.
    pub expire_at: i64,
}

/// Every key of databases `dbs` with type, value (sorted where order is not significant) and TTL.
pub fn contents(server: &RedisServer, dbs: &[i64]) -> BTreeMap<(i64, Vec<u8>), KeyContent> {
    let mut out = BTreeMap::new();
    for &db in dbs {
        let mut con = server.con_db(db);
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).expect("KEYS");
        for k in keys {
            let kind: String = redis::cmd("TYPE").arg(&k).query(&mut con).expect("TYPE");
            let value = match kind.as_str() {
                "string" => {
                    let v: Vec<u8> = redis::cmd("GET").arg(&k).query(&mut con).unwrap();
                    format!("{v:?}")
                }
                "list" => {
                    let v: Vec<Vec<u8>> = redis::cmd("LRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .query(&mut con)
                        .unwrap();
                    format!("{v:?}")
                }
                "set" => {
                    let mut v: Vec<Vec<u8>> =
                        redis::cmd("SMEMBERS").arg(&k).query(&mut con).unwrap();
                    v.sort();
                    format!("{v:?}")
                }
                "zset" => {
                    let v: Vec<(Vec<u8>, String)> = redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(&mut con)
                        .unwrap();
                    format!("{v:?}")
                }
                "hash" => {
                    let mut v: Vec<(Vec<u8>, Vec<u8>)> =
                        redis::cmd("HGETALL").arg(&k).query(&mut con).unwrap();
                    v.sort();
                    format!("{v:?}")
                }
                "stream" => {
                    let entries: redis::Value = redis::cmd("XRANGE")
                        .arg(&k)
                        .arg("-")
                        .arg("+")
                        .query(&mut con)
                        .unwrap();
                    let groups: redis::Value = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(&k)
                        .query(&mut con)
                        .unwrap();
                    let pending: redis::Value = redis::cmd("XPENDING")
                        .arg(&k)
                        .arg("g1")
                        .query(&mut con)
                        .unwrap_or(redis::Value::Nil);
                    format!("{entries:?} {groups:?} {pending:?}")
                }
                other => panic!("unexpected type {other}"),
            };
            let expire_at: i64 = redis::cmd("PEXPIRETIME").arg(&k).query(&mut con).unwrap();
            out.insert(
                (db, k),
                KeyContent {
                    kind,
                    value,
                    expire_at,
                },
            );
        }
    }
    out
}

/// Asserts that `got` holds the same keys, types and values as `want`, expiring within a second of
/// the same instant.
pub fn assert_same(
    want: &BTreeMap<(i64, Vec<u8>), KeyContent>,
    got: &BTreeMap<(i64, Vec<u8>), KeyContent>,
) {
    let wk: Vec<_> = want.keys().collect();
    let gk: Vec<_> = got.keys().collect();
    assert_eq!(wk, gk, "the key sets differ");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(w.kind, g.kind, "type of {k:?}");
        assert_eq!(w.value, g.value, "value of {k:?}");
        if w.expire_at < 0 {
            assert_eq!(g.expire_at, -1, "{k:?} must have no TTL");
        } else {
            assert!(
                (w.expire_at - g.expire_at).abs() <= 1000,
                "expiry of {k:?}: want {} ms, got {} ms (more than a second apart)",
                w.expire_at,
                g.expire_at
            );
        }
    }
}
