//! Who supervises a run: every open run records its owner, the process that started its worker
//! and will close it (the daemon, or `ferry run` on the command line), as `host:pid:start`.
//!
//! Recovery and the daemon's housekeeping touch only runs whose owner is gone. On this host that
//! is exact: the owner's process id is looked up in `/proc` and its start time compared, so a
//! recycled pid does not keep a dead owner alive. An owner on another host (a history shared by
//! several hosts) counts as gone once the lease it renews on its runs has expired.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// How long a lease on a run lasts without renewal; owners renew it well before.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The end of a lease taken or renewed at `now`.
pub fn lease_end(now: DateTime<Utc>) -> DateTime<Utc> {
    super::retry::at(now, LEASE)
}

/// Whether a lease that runs until `until` has expired at `now`; a run without a lease (never
/// claimed, or recorded before leases existed) has none to wait for.
pub fn lease_expired(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|until| until < now)
}

/// A process that owns runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The process start time (clock ticks since boot, from `/proc/PID/stat`); 0 when unknown.
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    /// Whether the process is on this host.
    pub fn is_local(&self) -> bool {
        self.host == hostname()
    }

    /// Whether the owner still runs, for an owner on this host (`None` for another host: only
    /// its lease can tell).
    pub fn alive_here(&self) -> Option<bool> {
        if !self.is_local() {
            return None;
        }
        Some(match process_start(self.pid) {
            Some(start) => self.start == 0 || start == self.start,
            None => false,
        })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.start)
    }
}

impl FromStr for Owner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The host name may itself hold ':' (never in practice, but rsplit keeps it whole).
        let mut parts = s.rsplitn(3, ':');
        let start = parts.next().and_then(|p| p.parse().ok());
        let pid = parts.next().and_then(|p| p.parse().ok());
        let host = parts.next();
        match (host, pid, start) {
            (Some(host), Some(pid), Some(start)) => Ok(Owner {
                host: host.to_string(),
                pid,
                start,
            }),
            _ => Err(format!("not an owner (host:pid:start): {s:?}")),
        }
    }
}

/// This host's name: `FERRY_HOST` when set (hosts whose system names collide, such as
/// containers, or several daemons on one machine standing for several hosts), else the system's.
pub fn hostname() -> String {
    if let Some(h) = std::env::var("FERRY_HOST")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The start time of a running process (see [`crate::process::start_time`]).
pub fn process_start(pid: u32) -> Option<u64> {
    crate::process::start_time(pid)
}

/// Whether a running process is a ferry worker.
pub fn is_ferry_worker(pid: u32) -> bool {
    crate::process::is_ferry_worker(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips() {
        let me = Owner::current();
        assert!(me.start > 0, "start time read from /proc");
        assert_eq!(me.alive_here(), Some(true));
        let back: Owner = me.to_string().parse().unwrap();
        assert_eq!(back, me);
    }

    #[test]
    fn a_recycled_pid_or_a_dead_process_is_not_the_owner() {
        let mut me = Owner::current();
        me.start += 1;
        assert_eq!(me.alive_here(), Some(false), "same pid, other start time");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Owner {
            host: hostname(),
            pid,
            start: 1,
        };
        assert_eq!(dead.alive_here(), Some(false));
        let remote = Owner {
            host: "elsewhere.invalid".into(),
            pid: 1,
            start: 1,
        };
        assert_eq!(remote.alive_here(), None, "only a lease tells");
    }

    #[test]
    fn a_lease_lasts_until_its_end_and_a_renewal_moves_it() {
        use chrono::TimeZone;
        let taken = Utc.with_ymd_and_hms(2026, 10, 25, 0, 59, 30).unwrap();
        let end = lease_end(taken);
        assert_eq!(end, taken + chrono::Duration::seconds(60));
        let second = chrono::Duration::seconds(1);
        assert!(!lease_expired(Some(end), taken));
        assert!(
            !lease_expired(Some(end), end),
            "held up to its last instant"
        );
        assert!(lease_expired(Some(end), end + second));
        // Renewed by a heartbeat 50 s in: held past the first end.
        let renewed = lease_end(taken + chrono::Duration::seconds(50));
        assert!(!lease_expired(Some(renewed), end + second));
        assert!(lease_expired(Some(renewed), renewed + second));
        assert!(lease_expired(None, taken), "no lease: nothing to wait for");
        assert_eq!(
            lease_end(DateTime::<Utc>::MAX_UTC),
            DateTime::<Utc>::MAX_UTC,
            "saturates"
        );
    }

    #[test]
    fn malformed_owners_are_refused() {
        for bad in ["", "host", "host:1", "host:x:1", "host:1:y"] {
            assert!(bad.parse::<Owner>().is_err(), "{bad}");
        }
    }
}
