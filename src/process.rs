//! Facts about processes on this host, read from `/proc`: whether one is alive (a zombie, dead
//! but not yet reaped by its parent, is not), when it started (to tell a recycled pid apart),
//! and whether it is a ferry worker.
//!
//! Used by the storage journal (whose writes belong to dead processes) and by the run owners of
//! `jobs` (whose runs belong to dead processes).

/// The fields after the command name in `/proc/PID/stat` (the name, in parentheses, may hold
/// spaces), or `None` when there is no such process.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether a process with this id runs: it exists and is not a zombie. A pid reused by
/// another process counts as alive (compare [`start_time`] to tell them apart).
pub fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match stat_fields(pid) {
        // Field 3 is the state: Z (zombie) and X (dead) no longer run.
        Some(f) => !matches!(f.first().map(String::as_str), Some("Z" | "X")),
        None => false,
    }
}

/// The start time of a running process in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` when it does not run.
pub fn start_time(pid: u32) -> Option<u64> {
    if !alive(pid) {
        return None;
    }
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether a running process is a ferry worker (so a recycled pid is never killed by mistake).
pub fn is_ferry_worker(pid: u32) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"ferry"))
                    && args.iter().any(|a| *a == b"worker")
            })
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive() {
        assert!(alive(std::process::id()));
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not waited for yet: once it has exited it is a zombie until reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "still in /proc"
        );
        assert!(!alive(pid), "an exited child not yet reaped is not alive");
        assert_eq!(start_time(pid), None);
        drop(child);
    }
}
