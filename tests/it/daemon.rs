//! `ferry serve` through the real binary: cron, overlap, missed runs, watched folders, hot
//! reload, crash recovery, graceful shutdown, retention.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Daemon, Project, wait_for};

const FAST: &str =
    "[limits]\nkill_grace = \"1s\"\n[daemon]\nconcurrency = 4\nshutdown_grace = \"500ms\"\n";

fn busy(seconds: u32) -> String {
    format!("local t0 = os.time(); while os.time() - t0 < {seconds} do end")
}

#[test]
fn cron_every_second_and_overlap_skip() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    p.script("tick", r#"return { schedule = "* * * * * *", run = function(ctx) return ctx.trigger.scheduled_at end }"#);
    p.script(
        "long",
        &format!(r#"return {{ schedule = "* * * * * *", overlap = "skip", run = function(ctx) {} end }}"#, busy(3)),
    );
    let d = Daemon::start(&p);
    wait_for("two tick runs", Duration::from_secs(10), || {
        let ok = p
            .runs_of("tick")
            .iter()
            .filter(|r| r["state"] == "succeeded")
            .count();
        (ok >= 2).then_some(())
    });
    // Consecutive runs are for consecutive seconds (the schedule's occurrences, not the clock
    // of a loaded machine).
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = p
        .runs_of("tick")
        .iter()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r["trigger"]["scheduled_at"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    let gap = (times[1] - times[0]).num_milliseconds();
    // On a loaded machine an occurrence may be passed over, never split.
    assert!(gap >= 1000 && gap % 1000 == 0, "{times:?}");
    assert!(
        times.iter().all(|t| t.timestamp_subsec_millis() == 0),
        "{times:?}"
    );
    wait_for("a skipped run", Duration::from_secs(10), || {
        p.runs_of("long")
            .iter()
            .any(|r| r["state"] == "skipped")
            .then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    let tick = p.runs_of("tick");
    for r in &tick {
        assert_eq!(r["trigger"]["kind"], "cron");
        assert!(r["trigger"]["scheduled_at"].as_str().is_some());
    }
    let long = p.runs_of("long");
    let going = long.iter().filter(|r| r["state"] != "skipped").count();
    assert!(going >= 1, "{long:?}");
}

#[test]
fn missed_once_runs_once_after_downtime() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    p.script(
        "every",
        r#"return { schedule = { cron = "* * * * * *", missed = "once" }, run = function(ctx) return ctx.trigger end }"#,
    );
    p.script(
        "skipper",
        r#"return { schedule = "* * * * * *", run = function(ctx) end }"#,
    );
    // The history as a daemon left it an hour ago, when both schedules last fired: an hour of
    // downtime without waiting for it. (The policies and their bounds are tested at fixed
    // instants in `jobs::cron`.)
    assert_eq!(
        p.ferry(&["runs", "list", "--json"]).code,
        0,
        "creates the history"
    );
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    rusqlite::Connection::open(p.path().join("data/ferry.db"))
        .unwrap()
        .execute(
            "INSERT INTO schedules (job, last_fire) VALUES ('every', ?1), ('skipper', ?1)",
            [&hour_ago],
        )
        .unwrap();
    let before = p.runs_of("every").len();
    let d = Daemon::start(&p);
    let catch_up = wait_for("the catch-up run", Duration::from_secs(10), || {
        p.runs_of("every")
            .into_iter()
            .find(|r| r["trigger"]["missed"].is_number())
    });
    assert_eq!(d.stop(), Some(0));
    assert!(
        catch_up["trigger"]["missed"].as_u64().unwrap() >= 2,
        "{catch_up}"
    );
    let runs = p.runs_of("every");
    let catch_ups = runs
        .iter()
        .filter(|r| r["trigger"]["missed"].is_number())
        .count();
    assert_eq!(
        catch_ups, 1,
        "one catch-up run, not one per missed occurrence: {runs:?}"
    );
    assert!(runs.len() > before);
    // The default policy (skip) leaves one visible `skipped` record for the missed occurrences.
    let skipped: Vec<_> = p
        .runs_of("skipper")
        .into_iter()
        .filter(|r| r["state"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0]["summary"]["missed"].as_u64().unwrap() >= 2);
}

#[test]
fn two_hundred_files_run_exactly_once_each() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    p.script(
        "ingest",
        r#"return { watch = { path = "inbox/in", pattern = "*.csv", settle = "200ms" },
                    run = function(ctx) return ctx.trigger.file end }"#,
    );
    std::fs::create_dir_all(p.path().join("inbox/in")).unwrap();
    let d = Daemon::start(&p);
    for i in 0..200 {
        p.write(&format!("inbox/in/f{i:03}.csv"), &format!("row {i}\n"));
    }
    p.write("inbox/in/ignored.txt", "not matching");
    wait_for("200 archived files", Duration::from_secs(120), || {
        (p.files_in("inbox/in/.ferry/archive").len() == 200).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    let runs = p.runs_of("ingest");
    assert_eq!(runs.len(), 200);
    let mut files: Vec<String> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "succeeded", "{r}");
            r["summary"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 200, "each file exactly once");
    assert!(p.files_in("inbox/in/.ferry/processing").is_empty());
    assert_eq!(
        p.files_in("inbox/in"),
        vec![".ferry".to_string(), "ignored.txt".to_string()]
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("inbox/in/.ferry/archive/f007.csv")).unwrap(),
        "row 7\n"
    );
}

#[test]
fn slow_writes_are_picked_up_once_complete_and_failures_land_in_failed() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    p.script(
        "slow",
        r#"return { watch = "inbox/slow/*", run = function(ctx) return ctx.trigger.file end }"#,
    );
    p.script(
        "bad",
        r#"return { watch = { path = "inbox/bad", settle = "100ms" }, run = function(ctx) error("cannot parse " .. ctx.trigger.file) end }"#,
    );
    let d = Daemon::start(&p);
    std::fs::create_dir_all(p.path().join("inbox/slow")).unwrap();
    let mut f = std::fs::File::create(p.path().join("inbox/slow/big.dat")).unwrap();
    f.write_all(&vec![b'a'; 50_000]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    f.write_all(&vec![b'b'; 50_000]).unwrap();
    drop(f);
    let complete = chrono::Utc::now();
    let run = wait_for("the slow file's run", Duration::from_secs(20), || {
        p.runs_of("slow")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    let queued = chrono::DateTime::parse_from_rfc3339(run["queued_at"].as_str().unwrap()).unwrap();
    assert!(
        queued >= complete,
        "picked up at {queued}, before the write completed at {complete}"
    );
    let archived = wait_for("the archived file", Duration::from_secs(10), || {
        std::fs::read(p.path().join("inbox/slow/.ferry/archive/big.dat")).ok()
    });
    assert_eq!(
        archived.len(),
        100_000,
        "the whole file was there when it was picked up"
    );

    std::fs::create_dir_all(p.path().join("inbox/bad")).unwrap();
    p.write("inbox/bad/x.json", "{}");
    wait_for("the failed file", Duration::from_secs(20), || {
        (p.files_in("inbox/bad/.ferry/failed").len() == 2).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    assert_eq!(p.runs_of("slow").len(), 1, "run once");
    let err =
        std::fs::read_to_string(p.path().join("inbox/bad/.ferry/failed/x.json.error.txt")).unwrap();
    assert!(
        err.contains("scripts/bad.lua:1: cannot parse inbox/bad/.ferry/processing/x.json"),
        "{err}"
    );
    assert_eq!(p.runs_of("bad")[0]["state"], "failed");
}

#[test]
fn edits_take_effect_and_broken_edits_keep_the_old_version() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    let job = |v: u32| {
        format!(
            r#"return {{ schedule = "* * * * * *", run = function(ctx) return {{ v = {v} }} end }}"#
        )
    };
    p.script("live", &job(1));
    let d = Daemon::start(&p);
    wait_for("a v1 run", Duration::from_secs(10), || {
        p.runs_of("live")
            .iter()
            .any(|r| r["summary"]["v"] == 1)
            .then_some(())
    });
    p.script("live", &job(2));
    wait_for("a v2 run", Duration::from_secs(10), || {
        p.runs_of("live")
            .iter()
            .any(|r| r["summary"]["v"] == 2)
            .then_some(())
    });
    p.script(
        "live",
        "return { schedule = \"* * * * * *\", run = function(ctx) return { v = 3 } end",
    );
    wait_for(
        "the daemon to notice the broken edit",
        Duration::from_secs(10),
        || {
            d.log()
                .contains("job script does not load; the previous version stays active")
                .then_some(())
        },
    );
    let after_break = p.runs_of("live").len();
    wait_for(
        "runs of the old version after the broken edit",
        Duration::from_secs(10),
        || {
            let runs = p.runs_of("live");
            (runs.len() >= after_break + 2).then_some(())
        },
    );
    assert!(p.runs_of("live").iter().all(|r| r["summary"]["v"] != 3));
    let jobs = p.ferry(&["jobs", "--json"]).json();
    let live = &jobs.as_array().unwrap()[0];
    assert!(
        live["error"].as_str().unwrap().contains("scripts/live.lua"),
        "{live}"
    );
    // The daemon keeps the previous version: the JSON and the table say so, with the load
    // error's file and line, locally (which asks the running daemon) and through --server.
    assert_eq!(live["active_version"], "previous", "{live}");
    assert_eq!(live["load_error"]["line"], 1, "{live}");
    assert_eq!(live["load_error"]["file"], "scripts/live.lua", "{live}");
    for args in [vec!["jobs"], vec!["--server", d.url.as_str(), "jobs"]] {
        let r = p.ferry(&args);
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with("live "))
            .unwrap_or_else(|| panic!("{args:?}: no line for live: {}", r.all()));
        assert!(
            line.contains("active: previous version; reload failed: scripts/live.lua:1:"),
            "{args:?}: {line}"
        );
    }
    let api: serde_json::Value = reqwest::blocking::get(format!("{}/api/v1/jobs/live", d.url))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["active_version"], "previous", "{api}");
    assert!(
        api["load_error"]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("scripts/live.lua:1:"),
        "{api}"
    );
    // A new script is picked up, a removed one goes away.
    p.script(
        "fresh",
        r#"return { schedule = "* * * * * *", run = function(ctx) return "fresh" end }"#,
    );
    wait_for("a run of the new job", Duration::from_secs(10), || {
        (!p.runs_of("fresh").is_empty()).then_some(())
    });
    std::fs::remove_file(p.path().join("scripts/fresh.lua")).unwrap();
    wait_for("the removal", Duration::from_secs(10), || {
        d.log().contains("job removed").then_some(())
    });
    let n = p.runs_of("fresh").len();
    // Two more runs of the job still there: its schedule's occurrences passed for both.
    let live = p.runs_of("live").len();
    wait_for("two more runs of live", Duration::from_secs(10), || {
        (p.runs_of("live").len() >= live + 2).then_some(())
    });
    assert!(
        p.runs_of("fresh").len() <= n + 2,
        "a removed job stops running"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn kill_9_during_a_run_is_recovered_and_retried_without_losing_the_file() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    p.script(
        "fragile",
        &format!(
            r#"return {{ watch = {{ path = "inbox/f", settle = "100ms" }}, retries = 1, retry_delay = "100ms",
               run = function(ctx) if ctx.trigger.kind == "file" then {} end return ctx.trigger end }}"#,
            busy(60)
        ),
    );
    std::fs::create_dir_all(p.path().join("inbox/f")).unwrap();
    let d = Daemon::start(&p);
    p.write("inbox/f/data.csv", "a,b\n");
    wait_for("the run to be going", Duration::from_secs(20), || {
        p.runs_of("fragile")
            .into_iter()
            .find(|r| r["state"] == "running")
    });
    d.kill9();
    assert_eq!(p.files_in("inbox/f/.ferry/processing"), vec!["data.csv"]);
    let d = Daemon::start(&p);
    let retry = wait_for("the retry to succeed", Duration::from_secs(30), || {
        p.runs_of("fragile")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    wait_for("the file archived", Duration::from_secs(10), || {
        (p.files_in("inbox/f/.ferry/archive") == vec!["data.csv"]).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
    let runs = p.runs_of("fragile");
    assert_eq!(runs[0]["state"], "interrupted", "{runs:?}");
    assert_eq!(runs[0]["error"]["code"], "interrupted");
    assert_eq!(retry["trigger"]["kind"], "retry");
    assert_eq!(retry["trigger"]["of"], runs[0]["id"]);
    assert_eq!(
        retry["summary"]["file"],
        "inbox/f/.ferry/processing/data.csv"
    );
    assert_eq!(runs.len(), 2);
}

#[test]
fn sigterm_cancels_a_running_job_and_exits_zero() {
    let p = Project::new();
    p.write("ferry.toml", FAST);
    p.script(
        "forever",
        &format!(
            r#"return {{ schedule = "* * * * * *", run = function(ctx) {} end }}"#,
            busy(120)
        ),
    );
    let d = Daemon::start(&p);
    wait_for("the run to be going", Duration::from_secs(20), || {
        p.runs_of("forever")
            .into_iter()
            .find(|r| r["state"] == "running")
    });
    let t = Instant::now();
    assert_eq!(d.stop(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(30));
    let runs = p.runs_of("forever");
    assert!(runs.iter().all(|r| r["state"] != "running"), "{runs:?}");
    assert!(runs.iter().any(|r| r["state"] == "cancelled"), "{runs:?}");
}

#[test]
fn retention_deletes_old_runs_and_keeps_the_newest() {
    let p = Project::new();
    p.script("often", "return { run = function() end }");
    for _ in 0..5 {
        assert_eq!(p.ferry(&["run", "often"]).code, 0);
    }
    p.write(
        "ferry.toml",
        &format!("{FAST}[retention]\nruns_per_job = 2\n"),
    );
    let d = Daemon::start(&p);
    assert_eq!(d.stop(), Some(0));
    let ids: Vec<i64> = p
        .runs_of("often")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 5]);
}

#[test]
fn serve_with_a_bad_config_fails_clearly() {
    let p = Project::new();
    p.write("ferry.toml", "[daemon]\nconcurrency = 0\n");
    let r = p.ferry(&["serve"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("daemon.concurrency: must be from 1 to 1024, got 0"),
        "{}",
        r.all()
    );
}

/// The `ferry worker` children of a process.
fn worker_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which ends with ')'): state, ppid, ...
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_worker = cmdline.split(|b| *b == 0).any(|a| a == b"worker");
        if ppid == Some(parent) && is_worker && !stat.contains(") Z ") {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn runs_start_in_workers_kept_warm_and_the_pool_refills() {
    let p = Project::new();
    p.write("ferry.toml", &format!("{FAST}warm_workers = 2\n"));
    p.script(
        "quick",
        r#"return { run = function(ctx) return { ok = true } end }"#,
    );
    let d = Daemon::start(&p);
    let daemon_pid = d.child.id();
    let warm = wait_for("two warm workers", Duration::from_secs(20), || {
        let w = worker_children(daemon_pid);
        (w.len() == 2).then_some(w)
    });
    let r = p.ferry(&["trigger", "quick"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let run = wait_for("the run to finish", Duration::from_secs(20), || {
        p.runs_of("quick")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    let db = rusqlite::Connection::open(p.path().join("data/ferry.db")).unwrap();
    let pid: u32 = db
        .query_row(
            "SELECT worker_pid FROM runs WHERE id = ?1",
            [run["id"].as_i64().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        warm.contains(&pid),
        "run in worker {pid}, warm ones were {warm:?}"
    );
    // The worker serves the next run too (a fresh VM each time); no new process starts.
    let worker_of = |id: i64| -> u32 {
        db.query_row("SELECT worker_pid FROM runs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let run_quick = || {
        let before = p.runs_of("quick").len();
        let r = p.ferry(&["trigger", "quick"]);
        assert_eq!(r.code, 0, "{}", r.all());
        wait_for("the run to finish", Duration::from_secs(20), || {
            let runs = p.runs_of("quick");
            (runs.len() > before && runs.last().unwrap()["state"] == "succeeded")
                .then(|| runs.last().unwrap()["id"].as_i64().unwrap())
        })
    };
    let second = run_quick();
    assert!(warm.contains(&worker_of(second)), "served by a warm worker");
    assert_eq!(
        worker_children(daemon_pid),
        warm,
        "no process started for it"
    );
    // A worker that dies (a crash) is replaced.
    common::signal(pid, common::SIGKILL);
    let third = run_quick();
    assert_ne!(worker_of(third), pid);
    let after = wait_for("the pool to refill", Duration::from_secs(20), || {
        let w = worker_children(daemon_pid);
        (w.len() == 2 && !w.contains(&pid)).then_some(w)
    });
    assert_eq!(after.len(), 2);
    assert_eq!(d.stop(), Some(0));
    // No worker outlives the daemon.
    wait_for("the warm workers to exit", Duration::from_secs(10), || {
        after
            .iter()
            .all(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.is_empty() || stat.contains(") Z ")
            })
            .then_some(())
    });
}

/// Issue #14: the retry delay has a maximum. A job whose `retry_delay` is an hour is retried
/// after `[daemon] retry_max_delay` (here 1s), and a job's own `retry_max_delay` wins over the
/// daemon's; the retry time is recorded as `not_before`.
#[test]
fn retry_delays_are_capped_by_retry_max_delay() {
    let p = Project::new();
    p.write("ferry.toml", &format!("{FAST}retry_max_delay = \"1s\"\n"));
    p.script(
        "flaky",
        r#"return { retries = 1, retry_delay = "1h",
             run = function(ctx) if ctx.trigger.kind ~= "retry" then error("first attempt fails") end end }"#,
    );
    p.script(
        "patient",
        r#"return { retries = 1, retry_delay = "1h", retry_max_delay = "2h",
             run = function(ctx) error("always fails") end }"#,
    );
    let d = Daemon::start(&p);
    for job in ["flaky", "patient"] {
        let r = p.ferry(&["trigger", job]);
        assert_eq!(r.code, 0, "{}", r.all());
    }
    let retry = wait_for("the capped retry", Duration::from_secs(30), || {
        p.runs_of("flaky")
            .into_iter()
            .find(|r| r["state"] == "succeeded")
    });
    assert_eq!(retry["trigger"]["kind"], "retry");
    let patient = wait_for(
        "the patient job's retry queued",
        Duration::from_secs(30),
        || {
            p.runs_of("patient")
                .into_iter()
                .find(|r| r["trigger"]["kind"] == "retry")
        },
    );
    assert_eq!(d.stop(), Some(0));
    let first = &p.runs_of("patient")[0];
    let failed_at =
        chrono::DateTime::parse_from_rfc3339(first["finished_at"].as_str().unwrap()).unwrap();
    let not_before =
        chrono::DateTime::parse_from_rfc3339(patient["not_before"].as_str().unwrap()).unwrap();
    let wait = (not_before - failed_at).num_seconds();
    // An hour plus up to 10% jitter, not the daemon's 1s cap.
    assert!((3590..=3970).contains(&wait), "{wait}s: {patient}");
    assert_eq!(patient["state"], "queued", "{patient}");
}
