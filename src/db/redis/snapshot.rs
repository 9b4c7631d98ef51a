//! Point-in-time snapshots through the replication handshake (`SYNC`).

use super::*;

impl RedisTarget {
    /// Streams a point-in-time RDB snapshot of the whole server into `out` through the
    /// replication handshake (`SYNC`, as `redis-cli --rdb` does): the server forks, writes its
    /// dataset as an RDB file and sends it. Every database, all types, functions included;
    /// consistent at one instant, unlike a `SCAN`. Returns the bytes written. Servers that do
    /// not allow replication commands (many managed services) answer with an error.
    pub fn snapshot(
        &self,
        out: &mut dyn std::io::Write,
        interrupt: Option<&Interrupt>,
    ) -> Result<u64, RedisError> {
        use std::io::{BufRead, BufReader, Read, Write};
        let redis::ConnectionAddr::Tcp(host, port) = self.info.addr() else {
            return Err(RedisError::Config(
                "snapshot: only plain TCP connections (redis://host:port) are supported, not TLS or unix sockets; back up with SCAN instead".into(),
            ));
        };
        let io = |what: &str, e: std::io::Error| RedisError::Io {
            target: self.label.clone(),
            command: "SYNC".into(),
            message: format!("{what}: {e}"),
        };
        let addrs: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))
                .map_err(|e| self.connect_err_io(&e))?
                .collect();
        let mut stream = None;
        let mut last = None;
        for a in addrs {
            match std::net::TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(self.connect_err_io(&e)),
            (None, None) => {
                return Err(RedisError::Connect {
                    target: self.label.clone(),
                    message: "the host name resolves to no address".into(),
                });
            }
        };
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| io("socket", e))?;
        let mut writer = stream.try_clone().map_err(|e| io("socket", e))?;
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        let mut line = Vec::new();
        let read_line = |reader: &mut BufReader<std::net::TcpStream>,
                         line: &mut Vec<u8>|
         -> Result<(), RedisError> {
            line.clear();
            reader
                .read_until(b'\n', line)
                .map_err(|e| io("reading the reply", e))?;
            if line.is_empty() {
                return Err(RedisError::Io {
                    target: self.label.clone(),
                    command: "SYNC".into(),
                    message: "the server closed the connection".into(),
                });
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            Ok(())
        };
        let settings = self.info.redis_settings();
        if let Some(pw) = settings.password() {
            let mut buf = Vec::new();
            match settings.username() {
                Some(u) => {
                    pack_command(&mut buf, &[b"AUTH".as_slice(), u.as_bytes(), pw.as_bytes()])
                }
                None => pack_command(&mut buf, &[b"AUTH".as_slice(), pw.as_bytes()]),
            }
            writer.write_all(&buf).map_err(|e| io("sending AUTH", e))?;
            read_line(&mut reader, &mut line)?;
            if line.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&line[1..]).into_owned();
                return Err(RedisError::Connect {
                    target: self.label.clone(),
                    message: if text.contains("WRONGPASS") || text.contains("invalid password") {
                        "authentication failed: wrong user name or password".into()
                    } else {
                        text
                    },
                });
            }
        }
        // Redis 7+: send the snapshot only, no replication stream after it. Older servers
        // answer with an error, which is fine. No `capa eof`: see below.
        // Each command waits for its reply: SYNC refuses to start with replies pending.
        let mut buf = Vec::new();
        pack_command(&mut buf, &[b"REPLCONF".as_slice(), b"rdb-only", b"1"]);
        writer
            .write_all(&buf)
            .map_err(|e| io("sending REPLCONF", e))?;
        read_line(&mut reader, &mut line)?;
        buf.clear();
        pack_command(&mut buf, &[b"SYNC".as_slice()]);
        writer.write_all(&buf).map_err(|e| io("sending SYNC", e))?;
        // The SYNC reply: newlines while the server prepares the snapshot, then `$LEN`, or an
        // error.
        let header = loop {
            read_line(&mut reader, &mut line)?;
            if line.is_empty() {
                if interrupt.is_some_and(|f| f()) {
                    return Err(RedisError::Interrupted);
                }
                continue;
            }
            break std::mem::take(&mut line);
        };
        let stopped = || interrupt.is_some_and(|f| f());
        let server_err = |message: String| RedisError::Server {
            target: self.label.clone(),
            command: "SYNC".into(),
            message,
        };
        if header.first() == Some(&b'-') {
            let text = String::from_utf8_lossy(&header[1..]).into_owned();
            let hint = if text.starts_with("NOPERM") || text.contains("unknown command") {
                " (this server or user may not take snapshots; back up with SCAN instead)"
            } else {
                ""
            };
            return Err(server_err(format!("{text}{hint}")));
        }
        let Some(rest) = header.strip_prefix(b"$") else {
            return Err(server_err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(&header)
            )));
        };
        let mut chunk = vec![0u8; 1 << 16];
        let mut written = 0u64;
        // Without `REPLCONF capa eof` the server sends the file with its length first (never
        // the diskless `$EOF:<mark>` form, whose start waits `repl-diskless-sync-delay`).
        let len: u64 = std::str::from_utf8(rest)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                server_err(format!(
                    "unexpected reply {:?}",
                    String::from_utf8_lossy(&header)
                ))
            })?;
        while written < len {
            if stopped() {
                return Err(RedisError::Interrupted);
            }
            let want = usize::try_from(len - written)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            let n = reader
                .read(&mut chunk[..want])
                .map_err(|e| io("reading the snapshot", e))?;
            if n == 0 {
                return Err(server_err(format!(
                    "the connection closed after {written} of {len} bytes"
                )));
            }
            out.write_all(&chunk[..n])
                .map_err(|e| io("writing the snapshot", e))?;
            written += n as u64;
        }
        out.flush().map_err(|e| io("writing the snapshot", e))?;
        Ok(written)
    }

    fn connect_err_io(&self, e: &std::io::Error) -> RedisError {
        RedisError::Connect {
            target: self.label.clone(),
            message: if e.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("connection refused: nothing listens at {}", self.label)
            } else {
                e.to_string()
            },
        }
    }
}
