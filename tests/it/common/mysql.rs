//! Real MariaDB servers for tests: Debian's `mariadb-server`, initialised in a temp dir
//! (`mariadb-install-db`) and started on a free port with `local_infile` on and TLS (a
//! certificate for 127.0.0.1 signed by a CA of its own), with a user `ferry` that has a
//! password.
//!
//! Starting a server takes seconds, so the tests of one binary share one ([`MysqlServer::shared`]),
//! each test in a database of its own ([`MysqlServer::database`]); a test that changes the
//! server's settings starts its own ([`MysqlServer::start`]). A server runs under a small shell
//! that holds the other end of a pipe from the test process: when the test process ends, however
//! it ends, the shell kills the server and removes its folder.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The password of the `ferry` user.
pub const PASSWORD: &str = "my-Sup3r-s3cret-9931";

/// A running MariaDB server.
pub struct MysqlServer {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The folder of the server (data, socket, certificates).
    pub dir: PathBuf,
    /// The CA certificate the server's certificate chains to.
    pub ca: PathBuf,
    /// The wrapper shell; closing its stdin stops the server.
    child: Option<Child>,
    stdin: Option<ChildStdin>,
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

const WRAPPER: &str = r#"
set -e
D="$1"; PORT="$2"; shift 2
mariadb-install-db --no-defaults --datadir="$D/data" --user=root \
  --auth-root-authentication-method=normal --skip-test-db >"$D/install.log" 2>&1
mariadbd --no-defaults --datadir="$D/data" --socket="$D/sock" --port="$PORT" \
  --bind-address=127.0.0.1 --user=root --skip-log-bin --skip-name-resolve \
  --innodb-buffer-pool-size=128M --innodb-log-file-size=32M --innodb-flush-log-at-trx-commit=2 \
  --max-connections=200 --pid-file="$D/pid" \
  --ssl-cert="$D/server.crt" --ssl-key="$D/server.key" --ssl-ca="$D/ca.crt" \
  "$@" >"$D/err.log" 2>&1 &
pid=$!
echo started
# Until the test process closes this pipe (it ends, or drops the server).
cat >/dev/null || true
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
rm -rf "$D"
"#;

impl MysqlServer {
    /// The server shared by the tests of this binary.
    pub fn shared() -> &'static MysqlServer {
        static SHARED: OnceLock<MysqlServer> = OnceLock::new();
        SHARED.get_or_init(|| MysqlServer::start(&["--local-infile=1"]))
    }

    /// Starts a server of its own with extra `mariadbd` arguments; stopped when dropped.
    pub fn start(args: &[&str]) -> MysqlServer {
        let dir = tempfile::Builder::new()
            .prefix("ferry-mysql-test-")
            .tempdir()
            .expect("temp dir for mariadb")
            .keep();
        super::tls::make(&dir);
        let port = free_port();
        let mut child = match Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&dir)
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot start sh for mariadbd: {e}"),
        };
        let stdin = child.stdin.take();
        let mut server = MysqlServer {
            port,
            ca: dir.join("ca.crt"),
            dir,
            child: Some(child),
            stdin,
        };
        server.wait_ready();
        server.admin(&format!(
            "CREATE USER 'ferry'@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO 'ferry'@'%' WITH GRANT OPTION;"
        ));
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.dir.join("sock").exists() && self.try_admin("SELECT 1").is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "mariadbd exited with {status}; the MySQL tests need Debian's mariadb-server (tests/setup.sh installs it)\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mariadbd did not start within 60 s\n{}", self.log());
    }

    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}\n{}", read("install.log"), read("err.log"))
    }

    fn try_admin(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "--default-character-set=utf8mb4",
                "--batch",
            ])
            .args(["--skip-column-names", "-u", "root", "-S"])
            .arg(self.dir.join("sock"))
            .args(["-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL as root over the socket; panics on failure. Returns the `--batch` output.
    pub fn admin(&self, sql: &str) -> String {
        self.try_admin(sql)
            .unwrap_or_else(|e| panic!("mariadb -e {sql:?}: {e}"))
    }

    /// Creates (anew) database `name` and returns it.
    pub fn database(&self, name: &str) -> String {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
        ));
        name.to_owned()
    }

    /// `mysql://ferry@127.0.0.1:PORT/DB` without the password.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://ferry@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL with the password in it.
    pub fn url_with_password(&self, db: &str) -> String {
        format!("mysql://ferry:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Rows of `sql` in database `db`, tab-separated as `mariadb --batch` prints them.
    pub fn rows(&self, db: &str, sql: &str) -> Vec<String> {
        self.admin(&format!("USE `{db}`; {sql}"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The `mariadb` command line as the `ferry` user, for tools run beside ferry.
    pub fn client_args(&self, db: &str) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-P".into(),
            self.port.to_string(),
            "-u".into(),
            "ferry".into(),
            format!("-p{PASSWORD}"),
            db.into(),
        ]
    }

    /// Whether `path` is inside the server's folder.
    pub fn owns(&self, path: &Path) -> bool {
        path.starts_with(&self.dir)
    }
}

impl Drop for MysqlServer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}
