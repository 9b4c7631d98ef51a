//! A real S3-compatible server for tests: `s3s-fs` (validates SigV4 signatures, honours
//! `If-None-Match: *`, implements multipart uploads), started on a free port with a temp root
//! and a random bucket.
//!
//! `s3s-fs` is installed by `tests/setup.sh` (`cargo install s3s-fs --version 0.14.1 --features
//! binary --locked`). When it is missing, tests that need it fail and say how to install it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ferry::storage::{S3Options, Secret};

/// How long the server may take to start.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Finds the `s3s-fs` binary: `$FERRY_S3S_FS`, then `PATH`, then `$CARGO_HOME/bin`.
pub fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_S3S_FS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FERRY_S3S_FS={} does not exist; install s3s-fs with `tests/setup.sh`",
            p.display()
        );
        return p;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(h) = cargo_home {
        dirs.push(h.join("bin"));
    }
    for d in dirs {
        let candidate = d.join("s3s-fs");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "s3s-fs is not installed, and the S3 tests need a real S3-compatible server. Install it with \
         `tests/setup.sh` (runs `cargo install s3s-fs --version 0.14.1 --features binary --locked`, \
         about 3 minutes), or point FERRY_S3S_FS at the binary"
    );
}

/// A running `s3s-fs` with its own root folder and bucket. Killed when dropped.
pub struct S3Server {
    child: Option<Child>,
    root: tempfile::TempDir,
    /// The port it listens on (kept across [`S3Server::restart`]).
    pub port: u16,
    /// The bucket (a folder under the root).
    pub bucket: String,
    /// Access key id the server accepts.
    pub access_key: String,
    /// Secret key the server accepts.
    pub secret_key: String,
}

impl S3Server {
    /// Starts a server on a free port.
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temp dir for the S3 server");
        let bucket = super::unique("bkt").to_ascii_lowercase();
        std::fs::create_dir(root.path().join(&bucket)).expect("bucket folder");
        let mut server = S3Server {
            child: None,
            root,
            port: 0,
            bucket,
            access_key: super::unique("AKFERRY"),
            secret_key: super::unique("SKFERRYSECRET"),
        };
        server.spawn(0);
        server
    }

    fn spawn(&mut self, port: u16) {
        let mut child = Command::new(s3s_fs_binary())
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--access-key")
            .arg(&self.access_key)
            .arg("--secret-key")
            .arg(&self.secret_key)
            .arg(self.root.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the address from the start-up line, then keeps draining the pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("server is running at http://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(START_DEADLINE) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not report its address within {START_DEADLINE:?}");
            }
        };
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected s3s-fs address {addr:?}"));
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://BUCKET/prefix` (or `s3://BUCKET` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }

    /// The store options to reach this server.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint()),
            access_key_id: Some(Secret::new(&self.access_key)),
            secret_access_key: Some(Secret::new(&self.secret_key)),
            ..S3Options::default()
        }
    }

    /// Stops the server (SIGKILL, as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, over the same data.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.spawn(port);
    }

    /// The server's root folder.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Multipart uploads the server still holds: s3s-fs keeps one `.upload-ID.json` file per
    /// upload in its root until it is completed or aborted.
    pub fn pending_uploads(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root.path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(".upload"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where s3s-fs keeps an object's bytes.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
