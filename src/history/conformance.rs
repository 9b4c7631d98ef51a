//! One conformance suite for every history backend, as object_store has for its stores: each
//! check takes a fresh, empty history and asserts what callers rely on. The SQLite backend runs
//! it in this crate's unit tests; `tests/it/history.rs` runs it against both SQLite and a real
//! PostgreSQL server.
//!
//! Public (and hidden from the docs) only so the integration tests can call it.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::*;

/// One check of the suite: it gets a fresh, empty history.
pub type Check = fn(&dyn HistoryStore);

/// Every check, by name, for a runner that makes a fresh history for each.
pub const CHECKS: &[(&str, Check)] = &[
    ("lifecycle", lifecycle),
    ("list_and_filter", list_and_filter),
    ("logs_artifacts_and_delete", logs_artifacts_and_delete),
    ("cancel", cancel),
    ("claims_and_leases", claims_and_leases),
    ("batch_claims", batch_claims),
    ("state", state),
    ("files", files),
    ("retention", retention),
    ("chains_and_pauses", chains_and_pauses),
    ("schedules_and_cron_once", schedules_and_cron_once),
    ("delayed_runs", delayed_runs),
    ("stats", stats),
    ("notifications", notifications),
    ("versions", versions),
    ("versions_pruned", versions_pruned),
    ("tokens", tokens),
    ("audit", audit),
    ("hosts", hosts),
];

/// Runs every check, each on a history from `fresh`.
pub fn run_all(fresh: &mut dyn FnMut(&str) -> HistoryHandle) {
    for (name, check) in CHECKS {
        let h = fresh(name);
        check(&*h);
    }
}

/// A manual run of `job` with small params, queued for the daemon (no owner, no delay).
pub fn new_run(job: &str) -> NewRun {
    NewRun {
        job: job.into(),
        trigger: Trigger::Manual,
        params: json!({"a": 1, "s": "x"}),
        attempt: 1,
        not_before: None,
        retry_of: None,
        owner: None,
    }
}

fn end(state: RunState) -> RunEnd {
    RunEnd {
        state,
        error: None,
        summary: None,
    }
}

fn close_to_now(t: chrono::DateTime<Utc>) -> bool {
    (Utc::now() - t).num_seconds().abs() < 120
}

/// A run goes queued → running → closed once, with its times, version, error and summary.
pub fn lifecycle(h: &dyn HistoryStore) {
    let id = h.create_run(&new_run("a")).unwrap();
    let r = h.get_run(id).unwrap();
    assert_eq!(r.state, RunState::Queued);
    assert_eq!(r.params, json!({"a": 1, "s": "x"}));
    assert_eq!(r.trigger, Trigger::Manual);
    assert_eq!(r.attempt, 1);
    assert!(close_to_now(r.queued_at));
    assert!(r.started_at.is_none() && r.owner.is_none());
    h.set_script_version(id, "v0").unwrap();
    assert_eq!(h.get_run(id).unwrap().script_version.as_deref(), Some("v0"));
    assert!(h.start_run(id, 4242, "v1").unwrap());
    assert!(!h.start_run(id, 4242, "v1").unwrap(), "started twice");
    assert_eq!(h.worker_pid(id).unwrap(), Some(4242));
    let r = h.get_run(id).unwrap();
    assert_eq!(r.state, RunState::Running);
    assert_eq!(r.script_version.as_deref(), Some("v1"));
    h.set_progress(id, 5, Some(10)).unwrap();
    let failed = RunEnd {
        state: RunState::Failed,
        error: Some(RunErrorInfo {
            code: ErrorCode::Run,
            message: "boom".into(),
            traceback: Some("at x.lua:3".into()),
        }),
        summary: Some(json!({"rows": 3})),
    };
    assert!(h.finish_run(id, &failed).unwrap());
    assert!(
        !h.finish_run(id, &end(RunState::Succeeded)).unwrap(),
        "closed twice"
    );
    let r = h.get_run(id).unwrap();
    assert_eq!(r.state, RunState::Failed);
    let e = r.error.unwrap();
    assert_eq!((e.code, e.message.as_str()), (ErrorCode::Run, "boom"));
    assert_eq!(e.traceback.as_deref(), Some("at x.lua:3"));
    assert_eq!(r.summary, Some(json!({"rows": 3})));
    assert_eq!(
        r.progress,
        Some(Progress {
            done: 5,
            total: Some(10)
        })
    );
    assert!(r.finished_at.is_some() && r.started_at.is_some());
    assert!(matches!(
        h.get_run(id + 1000),
        Err(HistoryError::NotFound(_))
    ));
    let retry_of_id = NewRun {
        attempt: 2,
        retry_of: Some(id),
        ..new_run("a")
    };
    let retry = h
        .create_retry(&retry_of_id)
        .unwrap()
        .expect("the first retry");
    assert_eq!(h.get_run(id).unwrap().retried_by, Some(retry));
    // A second retry of the same run (another host's, say) records nothing.
    let before = h.list_runs(&RunFilter::default()).unwrap().1;
    assert_eq!(h.create_retry(&retry_of_id).unwrap(), None);
    assert_eq!(h.list_runs(&RunFilter::default()).unwrap().1, before);
    assert_eq!(h.get_run(id).unwrap().retried_by, Some(retry));
    assert_eq!(h.get_run(retry).unwrap().retry_of, Some(id));
    assert_eq!(h.get_run(retry).unwrap().attempt, 2);
}

/// Lists are newest first, filtered by job, states and time, paged, with the total.
pub fn list_and_filter(h: &dyn HistoryStore) {
    let mut ids = Vec::new();
    for i in 0..6 {
        let id = h
            .create_run(&new_run(if i % 2 == 0 { "a" } else { "b" }))
            .unwrap();
        ids.push(id);
    }
    h.finish_run(ids[0], &end(RunState::Succeeded)).unwrap();
    h.finish_run(ids[1], &end(RunState::Failed)).unwrap();
    let (all, total) = h.list_runs(&RunFilter::default()).unwrap();
    assert_eq!(total, 6);
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), {
        let mut v = ids.clone();
        v.reverse();
        v
    });
    let (a, total) = h
        .list_runs(&RunFilter {
            job: Some("a".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((a.len(), total), (3, 3));
    let (some, total) = h
        .list_runs(&RunFilter {
            states: vec![RunState::Succeeded, RunState::Failed],
            ..Default::default()
        })
        .unwrap();
    assert_eq!((some.len(), total), (2, 2));
    let (page, total) = h
        .list_runs(&RunFilter {
            limit: 2,
            offset: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(total, 6);
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let (none, total) = h
        .list_runs(&RunFilter {
            since: Some(Utc::now() + chrono::Duration::hours(1)),
            ..Default::default()
        })
        .unwrap();
    assert!(none.is_empty() && total == 0);
    let (old, _) = h
        .list_runs(&RunFilter {
            until: Some(Utc::now() + chrono::Duration::hours(1)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(old.len(), 6);
    assert_eq!(h.runs_in_state(RunState::Queued).unwrap().len(), 4);
    assert_eq!(h.count_in_state(RunState::Queued).unwrap(), 4);
    let mut by_state = h.count_by_state().unwrap();
    by_state.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        by_state,
        vec![
            (RunState::Failed, 1),
            (RunState::Queued, 4),
            (RunState::Succeeded, 1)
        ]
    );
    let latest = h.latest_runs("b", 2).unwrap();
    assert_eq!(
        latest.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[5], ids[3]]
    );
}

/// Log lines keep their order and level; artifacts are listed; deleting a run takes its logs
/// and artifacts and is refused while it runs.
pub fn logs_artifacts_and_delete(h: &dyn HistoryStore) {
    let id = h.create_run(&new_run("a")).unwrap();
    let other = h.create_run(&new_run("a")).unwrap();
    h.start_run(id, 1, "v").unwrap();
    let s1 = h.append_log(id, LogLevel::Info, "one").unwrap();
    h.append_log(other, LogLevel::Info, "elsewhere").unwrap();
    let s2 = h.append_log(id, LogLevel::Warn, "two ünïcode").unwrap();
    let s3 = h.append_log(id, LogLevel::Error, "three").unwrap();
    assert!(s1 < s2 && s2 < s3);
    let logs = h.logs(id, 0, 0).unwrap();
    assert_eq!(
        logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        vec!["one", "two ünïcode", "three"]
    );
    assert_eq!(logs[1].level, LogLevel::Warn);
    assert!(close_to_now(logs[0].at));
    assert_eq!(h.logs(id, s1, 1).unwrap()[0].seq, s2);
    h.add_artifact(
        id,
        &NewArtifact {
            name: "out.csv".into(),
            store: "local".into(),
            path: "exports/out.csv".into(),
            size: Some(12),
            sha256: Some("ab".into()),
            copy: Some("1/out.csv".into()),
        },
    )
    .unwrap();
    h.add_artifact(
        id,
        &NewArtifact {
            name: "out.csv".into(),
            store: "local".into(),
            path: "exports/out2.csv".into(),
            size: Some(13),
            sha256: None,
            copy: None,
        },
    )
    .unwrap();
    let arts = h.artifacts(id).unwrap();
    assert_eq!(
        arts.len(),
        1,
        "an artifact of the same name replaces the first"
    );
    assert_eq!(arts[0].path, "exports/out2.csv");
    assert_eq!(arts[0].size, Some(13));
    assert!(matches!(
        h.delete_run(id),
        Err(HistoryError::Active(_, RunState::Running))
    ));
    h.finish_run(id, &end(RunState::Succeeded)).unwrap();
    h.delete_run(id).unwrap();
    assert!(matches!(h.get_run(id), Err(HistoryError::NotFound(_))));
    assert!(h.logs(id, 0, 0).unwrap().is_empty());
    assert!(h.artifacts(id).unwrap().is_empty());
    assert!(matches!(h.delete_run(id), Err(HistoryError::NotFound(_))));
    assert_eq!(h.logs(other, 0, 0).unwrap().len(), 1);
}

/// A queued run is cancelled at once; a running one gets the request; an ended one is left.
pub fn cancel(h: &dyn HistoryStore) {
    let q = h.create_run(&new_run("a")).unwrap();
    assert_eq!(h.request_cancel(q).unwrap(), CancelOutcome::Closed);
    let r = h.get_run(q).unwrap();
    assert_eq!(r.state, RunState::Cancelled);
    assert!(r.cancel_requested);
    assert!(
        !h.start_run(q, 1, "v").unwrap(),
        "a cancelled run does not start"
    );
    let running = h.create_run(&new_run("a")).unwrap();
    h.start_run(running, 1, "v").unwrap();
    assert!(!h.cancel_requested(running).unwrap());
    assert_eq!(h.request_cancel(running).unwrap(), CancelOutcome::Requested);
    assert!(h.cancel_requested(running).unwrap());
    h.finish_run(running, &end(RunState::Cancelled)).unwrap();
    assert_eq!(
        h.request_cancel(running).unwrap(),
        CancelOutcome::AlreadyEnded
    );
    assert!(matches!(
        h.request_cancel(running + 1000),
        Err(HistoryError::NotFound(_))
    ));
}

/// A queued run is claimed by one owner only; leases are renewed by their owner; a released
/// run can be claimed again.
pub fn claims_and_leases(h: &dyn HistoryStore) {
    let id = h.create_run(&new_run("a")).unwrap();
    assert!(h.lease_expired(id).unwrap(), "no lease yet");
    assert_eq!(h.runnable(0, 10, Utc::now()).unwrap().len(), 1);
    assert!(h.claim_run(id, "h1:1:1").unwrap());
    assert!(!h.claim_run(id, "h2:2:2").unwrap(), "claimed once");
    assert!(
        h.runnable(0, 10, Utc::now()).unwrap().is_empty(),
        "claimed runs are not runnable"
    );
    assert!(!h.lease_expired(id).unwrap());
    let owned = h.owned_open_runs().unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].owner.as_deref(), Some("h1:1:1"));
    assert_eq!(h.renew_leases("h1:1:1").unwrap(), 1);
    assert_eq!(h.renew_leases("h2:2:2").unwrap(), 0);
    assert!(
        !h.release_run(id, "h2:2:2").unwrap(),
        "only the owner releases"
    );
    assert!(
        !h.finish_owned_run(id, "h2:2:2", &end(RunState::Interrupted))
            .unwrap(),
        "only the owner's run is closed"
    );
    assert!(h.release_run(id, "h1:1:1").unwrap());
    assert!(
        !h.finish_owned_run(id, "h1:1:1", &end(RunState::Interrupted))
            .unwrap(),
        "a run given back is not its former owner's"
    );
    assert!(h.claim_run(id, "h2:2:2").unwrap());
    h.start_run(id, 7, "v").unwrap();
    assert!(!h.release_run(id, "h2:2:2").unwrap(), "a started run stays");
    let cancelled = h.create_run(&new_run("a")).unwrap();
    h.request_cancel(cancelled).unwrap();
    assert!(!h.claim_run(cancelled, "h1:1:1").unwrap());
    let with_owner = h
        .create_run(&NewRun {
            owner: Some("cli:9:9".into()),
            ..new_run("a")
        })
        .unwrap();
    assert!(
        !h.lease_expired(with_owner).unwrap(),
        "created with a lease"
    );
    assert!(!h.claim_run(with_owner, "h1:1:1").unwrap());
    assert!(
        h.finish_owned_run(with_owner, "cli:9:9", &end(RunState::Interrupted))
            .unwrap()
    );
    assert_eq!(h.get_run(with_owner).unwrap().state, RunState::Interrupted);
}

/// Batch claims take due runs oldest first, each once, never cancelled or delayed ones.
pub fn batch_claims(h: &dyn HistoryStore) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.create_run(&new_run("a")).unwrap());
    }
    h.request_cancel(ids[1]).unwrap();
    let later = h
        .create_run(&NewRun {
            not_before: Some(Utc::now() + chrono::Duration::hours(1)),
            ..new_run("a")
        })
        .unwrap();
    let skipped = h.create_run(&new_run("held")).unwrap();
    let first = h
        .claim_due("h1:1:1", 2, &["held".to_string()], &[])
        .unwrap();
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    assert!(first.iter().all(|r| r.owner.as_deref() == Some("h1:1:1")));
    let second = h
        .claim_due("h2:2:2", 10, &["held".to_string()], &[])
        .unwrap();
    assert_eq!(
        second.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[3], ids[4]]
    );
    assert!(
        h.claim_due("h3:3:3", 10, &["held".to_string()], &[])
            .unwrap()
            .is_empty()
    );
    let last = h.claim_due("h3:3:3", 10, &[], &[]).unwrap();
    assert_eq!(last.iter().map(|r| r.id).collect::<Vec<_>>(), vec![skipped]);
    assert!(h.get_run(later).unwrap().owner.is_none());
    assert!(h.next_not_before(Utc::now()).unwrap().is_some());
    assert!(h.job_queued_now("a").unwrap());
    assert!(!h.job_queued_now("zzz").unwrap());
}

/// Job state round-trips JSON values and is removed with `None`.
pub fn state(h: &dyn HistoryStore) {
    assert_eq!(h.state_get("j", "k").unwrap(), None);
    let v = json!({"x": [1, 2.5, "three"], "nested": {"ok": true}});
    h.state_set("j", "k", Some(&v)).unwrap();
    h.state_set("j", "other", Some(&json!(7))).unwrap();
    assert_eq!(h.state_get("j", "k").unwrap(), Some(v));
    h.state_set("j", "k", Some(&json!("replaced"))).unwrap();
    assert_eq!(h.state_get("j", "k").unwrap(), Some(json!("replaced")));
    h.state_set("j", "k", None).unwrap();
    assert_eq!(h.state_get("j", "k").unwrap(), None);
    assert_eq!(h.state_get("j", "other").unwrap(), Some(json!(7)));
    assert_eq!(h.state_get("other-job", "other").unwrap(), None);
}

/// Watched files: claimed once per key, recorded with their run, moved to a retry, finished;
/// discards recorded and removed.
pub fn files(h: &dyn HistoryStore) {
    assert!(h.claim_file_key("imp", "a.csv|3|17", "h1").unwrap());
    assert!(
        !h.claim_file_key("imp", "a.csv|3|17", "h2").unwrap(),
        "once"
    );
    assert!(
        h.claim_file_key("imp", "a.csv|4|18", "h2").unwrap(),
        "a new file of that name"
    );
    assert!(h.claim_file_key("other", "a.csv|3|17", "h2").unwrap());
    let run = h.create_run(&new_run("imp")).unwrap();
    let f = h
        .file_claimed("imp", "a.csv", "/in/.ferry/processing/a.csv", 3, run)
        .unwrap();
    assert_eq!(h.files_processing().unwrap().len(), 1);
    let rec = h.file_for_run(run).unwrap().unwrap();
    assert_eq!((rec.id, rec.name.as_str()), (f, "a.csv"));
    assert_eq!(rec.state, FileState::Processing);
    assert_eq!(
        h.file_by_processing_path("/in/.ferry/processing/a.csv")
            .unwrap()
            .map(|r| r.id),
        Some(f)
    );
    let retry = h
        .create_retry(&NewRun {
            attempt: 2,
            retry_of: Some(run),
            ..new_run("imp")
        })
        .unwrap()
        .expect("the first retry");
    // The file moves to the retry with it.
    assert!(h.file_for_run(run).unwrap().is_none());
    h.file_finished(f, FileState::Archived, Some("/in/.ferry/archive/a.csv"))
        .unwrap();
    let rec = h.file_for_run(retry).unwrap().unwrap();
    assert_eq!(rec.state, FileState::Archived);
    assert_eq!(rec.final_path.as_deref(), Some("/in/.ferry/archive/a.csv"));
    assert!(h.files_processing().unwrap().is_empty());
    assert!(
        h.file_by_processing_path("/in/.ferry/processing/a.csv")
            .unwrap()
            .is_none()
    );
    let d1 = h.add_discard(run, "local", "tmp/1").unwrap();
    h.add_discard(retry, "s3", "tmp/2").unwrap();
    assert_eq!(h.discards(None).unwrap().len(), 2);
    let mine = h.discards(Some(run)).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].store.as_str(), mine[0].prefix.as_str()),
        ("local", "tmp/1")
    );
    h.remove_discard(d1).unwrap();
    assert_eq!(h.discards(None).unwrap().len(), 1);
}

/// Retention deletes old and surplus closed runs, never open ones.
pub fn retention(h: &dyn HistoryStore) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = h.create_run(&new_run("a")).unwrap();
        h.finish_run(id, &end(RunState::Failed)).unwrap();
        ids.push(id);
    }
    let open = h.create_run(&new_run("a")).unwrap();
    let other = h.create_run(&new_run("b")).unwrap();
    h.finish_run(other, &end(RunState::Failed)).unwrap();
    let deleted = h
        .apply_retention(Utc::now() - chrono::Duration::days(1), 2)
        .unwrap();
    assert_eq!(deleted, 4);
    let (rows, _) = h.list_runs(&RunFilter::default()).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![other, open, ids[4]]
    );
    let deleted = h
        .apply_retention(Utc::now() + chrono::Duration::days(1), 1000)
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(h.list_runs(&RunFilter::default()).unwrap().1, 1);
}

/// Ended runs are offered to chaining once; a chained run is found by its upstream; pauses
/// are kept.
pub fn chains_and_pauses(h: &dyn HistoryStore) {
    let up = h.create_run(&new_run("up")).unwrap();
    assert!(h.unchained_runs(10).unwrap().is_empty(), "open runs wait");
    h.finish_run(up, &end(RunState::Succeeded)).unwrap();
    assert_eq!(h.unchained_runs(10).unwrap().len(), 1);
    let down = h
        .create_run(&NewRun {
            trigger: Trigger::Job {
                of: up,
                job: "up".into(),
                state: RunState::Succeeded,
                summary: Value::Null,
            },
            ..new_run("down")
        })
        .unwrap();
    assert_eq!(h.chained_run_of("down", up).unwrap(), Some(down));
    assert_eq!(h.chained_run_of("down", up + 1).unwrap(), None);
    h.set_chained(up).unwrap();
    assert!(h.unchained_runs(10).unwrap().is_empty());
    h.finish_run(down, &end(RunState::Failed)).unwrap();
    assert_eq!(h.set_all_chained().unwrap(), 1);
    assert!(h.pause_job("a", Some("ci")).unwrap());
    assert!(!h.pause_job("a", None).unwrap());
    let paused = h.paused_jobs().unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].0, "a");
    assert!(h.resume_job("a").unwrap());
    assert!(!h.resume_job("a").unwrap());
    assert!(h.paused_jobs().unwrap().is_empty());
    assert_eq!(
        h.previous_outcome("down", down + 1).unwrap(),
        Some(RunState::Failed)
    );
    assert_eq!(h.previous_outcome("down", down).unwrap(), None);
}

/// A schedule's last fire is kept; each occurrence is claimed once.
pub fn schedules_and_cron_once(h: &dyn HistoryStore) {
    assert_eq!(h.schedule_last_fire("a").unwrap(), None);
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .with_timezone(&Utc);
    h.schedule_set_last_fire("a", t).unwrap();
    assert_eq!(h.schedule_last_fire("a").unwrap(), Some(t));
    let t2 = t + chrono::Duration::seconds(1);
    h.schedule_set_last_fire("a", t2).unwrap();
    assert_eq!(h.schedule_last_fire("a").unwrap(), Some(t2));
    // Each occurrence is queued with its claim: once, whichever host asks first.
    let cron = |job: &str| NewRun {
        trigger: Trigger::Cron {
            scheduled_at: format_time(&t),
            missed: None,
        },
        ..new_run(job)
    };
    let id = h.create_cron_run(&cron("a"), t, "h1").unwrap().unwrap();
    let run = h.get_run(id).unwrap();
    assert_eq!((run.job.as_str(), run.state), ("a", RunState::Queued));
    assert!(
        matches!(&run.trigger, Trigger::Cron { scheduled_at, .. } if *scheduled_at == format_time(&t))
    );
    assert_eq!(
        h.create_cron_run(&cron("a"), t, "h2").unwrap(),
        None,
        "once per occurrence"
    );
    assert!(h.create_cron_run(&cron("a"), t2, "h2").unwrap().is_some());
    assert!(h.create_cron_run(&cron("b"), t, "h2").unwrap().is_some());
    // Hosts racing for one occurrence: one run, and a claim never stands without its run.
    let t3 = t2 + chrono::Duration::seconds(1);
    let won: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let run = cron("c");
                s.spawn(move || h.create_cron_run(&run, t3, &format!("h{i}")).unwrap())
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|x| x.join().unwrap())
            .count()
    });
    assert_eq!(won, 1);
    let (runs, total) = h
        .list_runs(&RunFilter {
            job: Some("c".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((runs.len(), total), (1, 1));
    assert_eq!(h.count_in_state(RunState::Queued).unwrap(), 4);
}

/// Runs with a `not_before` wait; they are listed as upcoming.
pub fn delayed_runs(h: &dyn HistoryStore) {
    let soon = Utc::now() + chrono::Duration::minutes(5);
    let later = h
        .create_run(&NewRun {
            not_before: Some(soon),
            ..new_run("a")
        })
        .unwrap();
    let now = h.create_run(&new_run("a")).unwrap();
    let runnable = h.runnable(0, 10, Utc::now()).unwrap();
    assert_eq!(runnable.iter().map(|r| r.id).collect::<Vec<_>>(), vec![now]);
    assert_eq!(
        h.runnable(now, 10, Utc::now()).unwrap().len(),
        0,
        "after an id"
    );
    let next = h.next_not_before(Utc::now()).unwrap().unwrap();
    assert!((next - soon).num_milliseconds().abs() < 5);
    let up = h.upcoming_runs(Utc::now(), 10).unwrap();
    assert_eq!(up.iter().map(|r| r.id).collect::<Vec<_>>(), vec![later]);
    h.finish_run(later, &end(RunState::Interrupted)).unwrap();
    assert_eq!(h.interrupted_unretried(None).unwrap().len(), 1);
    assert_eq!(
        h.interrupted_unretried(Some(Utc::now() + chrono::Duration::hours(1)))
            .unwrap()
            .len(),
        0
    );
}

/// Stats count runs by job and state.
pub fn stats(h: &dyn HistoryStore) {
    for (job, state) in [
        ("a", RunState::Succeeded),
        ("a", RunState::Succeeded),
        ("b", RunState::Failed),
    ] {
        let id = h.create_run(&new_run(job)).unwrap();
        h.start_run(id, 1, "v").unwrap();
        h.finish_run(id, &end(state)).unwrap();
    }
    let s = h.stats().unwrap();
    let a = s
        .iter()
        .find(|r| r.job == "a" && r.state == RunState::Succeeded)
        .unwrap();
    assert_eq!(a.count, 2);
    assert!(a.duration_seconds >= 0.0);
    assert_eq!(s.len(), 2);
}

/// Notifications are recorded once per run and target, due at once, retried, listed.
pub fn notifications(h: &dyn HistoryStore) {
    // The runs that ended since a time, in the order they ended (a notifier's catch-up).
    let before = Utc::now() - chrono::Duration::seconds(5);
    let (first, second) = (
        h.create_run(&new_run("x")).unwrap(),
        h.create_run(&new_run("y")).unwrap(),
    );
    assert!(h.runs_ended_since(before, 10).unwrap().is_empty());
    h.finish_run(second, &end(RunState::Failed)).unwrap();
    // Times are kept to the millisecond: the second end is a later one.
    std::thread::sleep(std::time::Duration::from_millis(10));
    h.finish_run(first, &end(RunState::Succeeded)).unwrap();
    assert_eq!(
        h.runs_ended_since(before, 10).unwrap(),
        vec![(second, "y".to_string()), (first, "x".to_string())]
    );
    assert_eq!(h.runs_ended_since(before, 1).unwrap().len(), 1);
    let later = Utc::now() + chrono::Duration::seconds(5);
    assert!(h.runs_ended_since(later, 10).unwrap().is_empty());

    let run = h.create_run(&new_run("a")).unwrap();
    let n = NewNotification {
        run_id: run,
        job: "a".into(),
        event: "failure".into(),
        channel: "webhook".into(),
        target: "https://hooks.example.com/…".into(),
    };
    let id = h.add_notification(&n).unwrap().unwrap();
    assert_eq!(h.add_notification(&n).unwrap(), None, "once per target");
    let due = h
        .due_notifications(Utc::now() + chrono::Duration::seconds(1), 10)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert!(h.next_notification_at().unwrap().is_some());
    let next = Utc::now() + chrono::Duration::minutes(1);
    h.notification_attempted(
        id,
        &Attempt {
            state: NotificationState::Pending,
            reason: Some("503".into()),
            next_at: Some(next),
        },
    )
    .unwrap();
    assert!(h.due_notifications(Utc::now(), 10).unwrap().is_empty());
    h.notification_attempted(
        id,
        &Attempt {
            state: NotificationState::Sent,
            reason: None,
            next_at: None,
        },
    )
    .unwrap();
    let list = h.notifications(run).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].attempts, 2);
    assert_eq!(list[0].state, NotificationState::Sent);
    assert!(list[0].last_at.is_some());
    assert!(h.next_notification_at().unwrap().is_none());
}

/// Versions are recorded when they differ from the newest, paged newest first, with sources.
pub fn versions(h: &dyn HistoryStore) {
    assert!(
        h.record_version("a", "h1", VersionOrigin::File, None, "one")
            .unwrap()
    );
    assert!(
        !h.record_version("a", "h1", VersionOrigin::Api, Some("ci"), "one")
            .unwrap()
    );
    assert!(
        h.record_version("a", "h2", VersionOrigin::Api, Some("ci"), "two")
            .unwrap()
    );
    assert!(
        h.record_version("a", "h1", VersionOrigin::Api, Some("ci"), "one")
            .unwrap()
    );
    assert!(
        h.record_version("b", "h1", VersionOrigin::File, None, "one")
            .unwrap()
    );
    let (list, total) = h.versions("a", 2, 0).unwrap();
    assert_eq!(total, 3);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].hash, "h1");
    assert_eq!(list[0].origin, VersionOrigin::Api);
    assert_eq!(list[0].written_by.as_deref(), Some("ci"));
    assert!(list[0].source.is_none());
    assert_eq!(list[1].hash, "h2");
    assert_eq!(h.versions("a", 2, 2).unwrap().0[0].hash, "h1");
    let v = h.version("a", "h2").unwrap().unwrap();
    assert_eq!(v.source.as_deref(), Some("two"));
    assert!(h.version("a", "nope").unwrap().is_none());
}

/// Retention prunes old script versions but keeps each job's two newest and every version a
/// remaining run names.
pub fn versions_pruned(h: &dyn HistoryStore) {
    for (hash, source) in [
        ("h0", "zero"),
        ("h1", "one"),
        ("h2", "two"),
        ("h3", "three"),
    ] {
        assert!(
            h.record_version("a", hash, VersionOrigin::File, None, source)
                .unwrap()
        );
    }
    assert!(
        h.record_version("b", "h0", VersionOrigin::File, None, "b")
            .unwrap()
    );
    // A queued run (retention keeps open runs) of version h1.
    let run = h.create_run(&new_run("a")).unwrap();
    h.set_script_version(run, "h1").unwrap();
    // Everything is older than a cutoff a day ahead.
    h.apply_retention(Utc::now() + chrono::Duration::days(1), 1000)
        .unwrap();
    let (list, total) = h.versions("a", 10, 0).unwrap();
    let hashes: Vec<&str> = list.iter().map(|v| v.hash.as_str()).collect();
    assert_eq!((total, hashes), (3, vec!["h3", "h2", "h1"]));
    assert!(h.version("a", "h0").unwrap().is_none());
    assert!(h.version("b", "h0").unwrap().is_some(), "b's only version");
    // Nothing is pruned before its time.
    assert!(
        h.record_version("a", "h4", VersionOrigin::File, None, "four")
            .unwrap()
    );
    h.apply_retention(Utc::now() - chrono::Duration::days(1), 1000)
        .unwrap();
    assert_eq!(h.versions("a", 10, 0).unwrap().1, 4);
}

/// Tokens are stored by hash, found, listed with their last use, revoked.
pub fn tokens(h: &dyn HistoryStore) {
    assert!(!h.has_tokens().unwrap());
    assert!(h.create_token("ci", "aa", "run").unwrap());
    assert!(!h.create_token("ci", "bb", "read").unwrap());
    assert!(h.has_tokens().unwrap());
    assert_eq!(
        h.token_by_hash("aa").unwrap(),
        Some(("ci".to_owned(), "run".to_owned()))
    );
    assert_eq!(h.token_by_hash("bb").unwrap(), None);
    let list = h.tokens().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].last_used.is_some());
    assert!(h.revoke_token("ci").unwrap());
    assert!(!h.revoke_token("ci").unwrap());
    assert_eq!(h.token_by_hash("aa").unwrap(), None);
}

/// The audit log pages newest first.
pub fn audit(h: &dyn HistoryStore) {
    for i in 0..3 {
        h.record_audit(&NewAudit {
            actor: "ci",
            source: "127.0.0.1:1",
            action: "run.trigger",
            target: &format!("job{i}"),
            status: 201,
        })
        .unwrap();
    }
    let (page, total) = h.audit(2, 0).unwrap();
    assert_eq!(total, 3);
    assert_eq!(page[0].target, "job2");
    assert_eq!(page[1].target, "job1");
    assert_eq!(page[0].status, 201);
    assert_eq!(h.audit(2, 2).unwrap().0[0].target, "job0");
}

/// Live hosts are listed until they go; the history's id is made once.
pub fn hosts(h: &dyn HistoryStore) {
    let beat = |owner: &str, running| HostBeat {
        owner: owner.into(),
        host: "h".into(),
        listen: "127.0.0.1:7411".into(),
        running,
        capacity: 4,
        load: 0.5,
    };
    h.host_heartbeat(&beat("h:1:1", 1)).unwrap();
    h.host_heartbeat(&beat("h:2:2", 0)).unwrap();
    h.host_heartbeat(&beat("h:1:1", 3)).unwrap();
    let hosts = h.hosts(Duration::from_secs(60)).unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!((hosts[0].owner.as_str(), hosts[0].running), ("h:1:1", 3));
    assert_eq!(hosts[0].capacity, 4);
    h.host_gone("h:1:1").unwrap();
    assert_eq!(h.hosts(Duration::from_secs(60)).unwrap().len(), 1);
    let id = h.history_id().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(h.history_id().unwrap(), id, "made once");
}

#[cfg(test)]
mod tests {
    /// The SQLite history's own tests: versions and tokens included (they have no unit tests
    /// of their own beside this suite).
    #[test]
    fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::run_all(&mut |name| {
            std::sync::Arc::new(
                super::SqliteHistory::open(&dir.path().join(format!("{name}.db"))).unwrap(),
            )
        });
    }
}
