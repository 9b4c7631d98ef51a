//! One connection: commands, pipelines (plain and atomic), `SELECT`, `INFO`.

use super::*;

/// One open connection.
pub struct RedisConn {
    pub(super) con: redis::Connection,
    pub(super) target: RedisTarget,
    pub(super) db: i64,
}

impl RedisConn {
    /// The target this connection is to.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    pub(super) fn io_err(&self, command: &str, e: &redis::RedisError) -> RedisError {
        RedisError::Io {
            target: self.target.label.clone(),
            command: command.to_owned(),
            message: describe(e, &self.target.label),
        }
    }

    pub(super) fn send(&mut self, buf: &[u8], command: &str) -> Result<(), RedisError> {
        self.con
            .send_packed_command(buf)
            .map_err(|e| self.io_err(command, &e))
    }

    pub(super) fn recv(&mut self, command: &str) -> Result<Reply, RedisError> {
        match self.con.recv_response() {
            Ok(v) => Ok(Reply::from_value(v)),
            Err(e) => match e.kind() {
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => {
                    Ok(Reply::Error(server_message(&e)))
                }
                _ => Err(self.io_err(command, &e)),
            },
        }
    }

    /// Runs one command; an error reply is an error naming the command.
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RedisError> {
        if args.is_empty() {
            return Err(RedisError::Config(
                "a command needs at least its name".into(),
            ));
        }
        let name = command_name(args);
        let mut buf = Vec::new();
        pack_command(&mut buf, args);
        self.send(&buf, &name)?;
        match self.recv(&name)? {
            Reply::Error(message) => Err(RedisError::Server {
                target: self.target.label.clone(),
                command: name,
                message,
            }),
            reply => {
                self.note_select(args, &reply);
                Ok(reply)
            }
        }
    }

    pub(super) fn note_select<A: AsRef<[u8]>>(&mut self, args: &[A], reply: &Reply) {
        if args.len() == 2
            && args[0].as_ref().eq_ignore_ascii_case(b"SELECT")
            && matches!(reply, Reply::Status(_))
            && let Some(db) = std::str::from_utf8(args[1].as_ref())
                .ok()
                .and_then(|s| s.parse().ok())
        {
            self.db = db;
        }
    }

    /// Sends all commands in one round trip and returns one reply per command; error replies
    /// are [`Reply::Error`] entries. With `atomic` the commands run inside `MULTI`/`EXEC`.
    pub fn pipeline<A: AsRef<[u8]>>(
        &mut self,
        cmds: &[Vec<A>],
        atomic: bool,
    ) -> Result<Vec<Reply>, RedisError> {
        if let Some(i) = cmds.iter().position(|c| c.is_empty()) {
            return Err(RedisError::Config(format!(
                "pipeline: command {} is empty; expected a name and arguments",
                i + 1
            )));
        }
        let mut buf = Vec::new();
        if atomic {
            pack_command(&mut buf, &[b"MULTI"]);
        }
        for c in cmds {
            pack_command(&mut buf, c);
        }
        if atomic {
            pack_command(&mut buf, &[b"EXEC"]);
        }
        self.send(&buf, "pipeline")?;
        let mut replies = Vec::with_capacity(cmds.len());
        if atomic {
            self.expect_ok("MULTI")?;
            let mut queued_errors = Vec::new();
            for c in cmds {
                if let Reply::Error(e) = self.recv("pipeline")? {
                    queued_errors.push(format!("{}: {e}", command_name(c)));
                }
            }
            match self.recv("EXEC")? {
                Reply::Array(items) => replies = items,
                Reply::Error(e) => {
                    let detail = queued_errors.join("; ");
                    return Err(RedisError::Server {
                        target: self.target.label.clone(),
                        command: "EXEC".into(),
                        message: if detail.is_empty() {
                            e
                        } else {
                            format!("{e} ({detail})")
                        },
                    });
                }
                Reply::Nil => {
                    return Err(RedisError::Server {
                        target: self.target.label.clone(),
                        command: "EXEC".into(),
                        message: "the transaction was aborted (a watched key changed)".into(),
                    });
                }
                other => {
                    return Err(RedisError::Server {
                        target: self.target.label.clone(),
                        command: "EXEC".into(),
                        message: format!("unexpected reply {other:?}"),
                    });
                }
            }
        } else {
            for c in cmds {
                let r = self.recv("pipeline")?;
                self.note_select(c, &r);
                replies.push(r);
            }
        }
        Ok(replies)
    }

    pub(super) fn expect_ok(&mut self, command: &str) -> Result<(), RedisError> {
        match self.recv(command)? {
            Reply::Error(message) => Err(RedisError::Server {
                target: self.target.label.clone(),
                command: command.to_owned(),
                message,
            }),
            _ => Ok(()),
        }
    }

    /// Switches to database `db` unless it is selected already.
    pub fn select(&mut self, db: i64) -> Result<(), RedisError> {
        if db != self.db {
            self.command(&[b"SELECT".to_vec(), db.to_string().into_bytes()])?;
        }
        Ok(())
    }

    /// The RDB version the server writes and accepts in `RESTORE` payloads (from its
    /// `redis_version`); `None` when `INFO` does not tell.
    pub fn rdb_version(&mut self) -> Result<Option<u16>, RedisError> {
        let info = match self.command(&[b"INFO".as_slice(), b"server"])? {
            Reply::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            Reply::Status(s) => s,
            _ => return Ok(None),
        };
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .and_then(rdb_version_of_redis))
    }

    /// The number of keys in the selected database.
    pub fn dbsize(&mut self) -> Result<u64, RedisError> {
        match self.command(&[b"DBSIZE"])? {
            Reply::Int(n) => Ok(n.max(0) as u64),
            other => Err(RedisError::Server {
                target: self.target.label.clone(),
                command: "DBSIZE".into(),
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }
}
