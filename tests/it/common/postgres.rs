//! Real PostgreSQL servers for tests: Debian's `postgresql` (tests/setup.sh installs it), one
//! cluster per server, `initdb`'d in a temp dir and started on a free port.
//!
//! PostgreSQL refuses to run as root, and the tests run as root: the cluster's folder is given to
//! the `postgres` user and `initdb`/`pg_ctl` run as that user (`runuser`). When the tests run as
//! another user, the tools run as that user.
//!
//! Each cluster has two roles:
//! - the superuser [`PgServer::ADMIN`], reached over the Unix socket in the cluster's folder
//!   without a password (`trust`), for setting up and checking from the test itself;
//! - [`PgServer::USER`] with the password [`PgServer::PASSWORD`], owner of the database
//!   [`PgServer::DB`], reached over TCP on 127.0.0.1 with `scram-sha-256` (so a wrong password is
//!   refused), which is what ferry is pointed at.
//!
//! [`PgServer::start_tls`] adds TLS with a certificate for 127.0.0.1/localhost signed by a CA of
//! the test's own ([`PgServer::ca_file`]). The server is stopped (`pg_ctl stop -m immediate`) and
//! its folder removed when the value is dropped.
//!
//! Reused by the history's PostgreSQL backend tests: [`PgServer::create_database`] gives each test
//! a database of its own on a shared server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the server binaries (`initdb`, `pg_ctl`, `postgres`).
const DEBIAN_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL cluster, stopped and deleted when dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1 (the Unix socket is `.s.PGSQL.PORT` in [`PgServer::socket_dir`]).
    pub port: u16,
    /// With TLS: the CA certificate file the server's certificate is signed by.
    pub ca_file: Option<PathBuf>,
    stopped: bool,
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

/// The folder holding `initdb` and `pg_ctl`: `FERRY_PG_BIN`, else Debian's, else `pg_config
/// --bindir`.
fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("FERRY_PG_BIN") {
        return PathBuf::from(d);
    }
    if Path::new(DEBIAN_BIN).join("initdb").exists() {
        return PathBuf::from(DEBIAN_BIN);
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => panic!(
            "PostgreSQL's initdb not found in {DEBIAN_BIN} nor by pg_config; the PostgreSQL tests \
             need Debian's postgresql: run tests/setup.sh"
        ),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `program args` as the `postgres` user when we are root (PostgreSQL refuses root), else as
/// ourselves; panics with its output when it fails.
fn run_as_pg(program: &Path, args: &[&str]) -> String {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

/// Gives `path` to the `postgres` user (root only).
fn chown_pg(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success(), "chown postgres {}", path.display());
    }
}

impl PgServer {
    /// The superuser, reached over the Unix socket without a password.
    pub const ADMIN: &'static str = "ferry_admin";
    /// The role ferry connects as, with [`PgServer::PASSWORD`].
    pub const USER: &'static str = "ferry";
    /// The password of [`PgServer::USER`].
    pub const PASSWORD: &'static str = "pg-Sup3r-s3cret-4711";
    /// The database owned by [`PgServer::USER`].
    pub const DB: &'static str = "ferry";

    /// Starts a cluster without TLS.
    pub fn start() -> PgServer {
        Self::spawn(false)
    }

    /// Starts a cluster that also speaks TLS (see [`PgServer::ca_file`]).
    pub fn start_tls() -> PgServer {
        Self::spawn(true)
    }

    fn spawn(tls: bool) -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir()
            .expect("temp dir for postgres");
        let data = dir.path().join("data");
        let mut ca_file = None;
        chown_pg(dir.path());
        let data_s = data.display().to_string();
        run_as_pg(
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                Self::ADMIN,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let mut conf = String::from(
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 40\nshared_buffers = 32MB\n",
        );
        if tls {
            let certs_dir = dir.path().join("certs");
            std::fs::create_dir_all(&certs_dir).expect("certs dir");
            let certs = super::tls::make(&certs_dir);
            std::fs::copy(&certs.cert, data.join("server.crt")).expect("copy cert");
            std::fs::copy(&certs.key, data.join("server.key")).expect("copy key");
            chown_pg(&data);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod key");
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            ca_file = Some(certs.ca);
        }
        let conf_path = data.join("postgresql.conf");
        let mut all = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        all.push_str(&conf);
        std::fs::write(&conf_path, all).expect("write postgresql.conf");

        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                dir.path().display()
            );
            let log = dir.path().join("server.log").display().to_string();
            let mut cmd = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
                c
            } else {
                Command::new(bin.join("pg_ctl"))
            };
            let out = cmd
                .args(["-D", &data_s, "-l", &log, "-w", "-t", "30", "-o", &opts])
                .arg("start")
                .stdin(Stdio::null())
                .output()
                .expect("pg_ctl start");
            if out.status.success() {
                let server = PgServer {
                    dir,
                    bin,
                    port,
                    ca_file,
                    stopped: false,
                };
                server.setup_roles();
                return server;
            }
            last = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
        }
        panic!("postgres did not start: {last}");
    }

    fn setup_roles(&self) {
        self.psql_db(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                Self::USER,
                Self::PASSWORD
            ),
        );
        self.create_database(Self::DB);
    }

    /// The folder of the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `sql` with `psql` as the superuser over the Unix socket in database [`PgServer::DB`];
    /// returns the unaligned, tuples-only output.
    /// Panics when psql fails (`ON_ERROR_STOP`).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(Self::DB, sql)
    }

    /// [`PgServer::psql`] in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        let out = self.psql_cmd(db, sql).output().expect("run psql");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "psql failed on {sql:?}:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn psql_cmd(&self, db: &str, sql: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", Self::ADMIN, "-d", db])
            .args(["-c", sql])
            .stdin(Stdio::null());
        c
    }

    /// Creates database `name` owned by [`PgServer::USER`] (one per test on a shared server).
    pub fn create_database(&self, name: &str) {
        self.psql_db(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {}", Self::USER),
        );
    }

    /// `postgres://ferry@127.0.0.1:PORT/ferry` without the password.
    pub fn url(&self) -> String {
        self.url_db(Self::DB)
    }

    /// `postgres://ferry@127.0.0.1:PORT/DB` without the password.
    pub fn url_db(&self, db: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{db}", Self::USER, self.port)
    }

    /// The URL with the password in it.
    pub fn url_with_password(&self) -> String {
        self.url_with_password_db(Self::DB)
    }

    /// The URL of database `db` with the password in it.
    pub fn url_with_password_db(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            Self::USER,
            Self::PASSWORD,
            self.port
        )
    }

    /// A plain-TCP connection (no TLS) as [`PgServer::USER`] with its password, for checks.
    pub fn client(&self) -> postgres::Client {
        self.client_db(Self::DB)
    }

    /// [`PgServer::client`] to database `db`.
    pub fn client_db(&self, db: &str) -> postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cfg = postgres::Config::new();
            cfg.host("127.0.0.1")
                .port(self.port)
                .user(Self::USER)
                .password(Self::PASSWORD)
                .dbname(db)
                .ssl_mode(postgres::config::SslMode::Disable);
            match cfg.connect(postgres::NoTls) {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("connect to the test postgres: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs `sql` (one or more statements) as [`PgServer::USER`] in [`PgServer::DB`], so the
    /// tables it creates belong to the role ferry connects as.
    pub fn exec(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server now (`pg_ctl stop -m immediate`).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let data = self.dir.path().join("data").display().to_string();
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
