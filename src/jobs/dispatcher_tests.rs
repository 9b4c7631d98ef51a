//! The dispatch loop on a thread of its own, on a real SQLite history: woken by what is queued,
//! stopped when asked, drained at once when nothing runs.

use std::time::Duration;

use crate::history::conformance::new_run;
use crate::history::{NewRun, RunState};
use crate::jobs::testkit::{Fixture, utc};

#[test]
fn the_loop_handles_what_it_is_woken_for_and_stops_when_asked() {
    let f = Fixture::new("", chrono::Utc::now(), Vec::new());
    let mut events = f.dispatcher.events().listen();
    let looping = {
        let d = f.dispatcher.clone();
        std::thread::spawn(move || d.run())
    };
    // A run of a job this daemon does not have: the loop, woken, closes it as failed.
    let id = f.history().create_run(&new_run("gone")).unwrap();
    f.dispatcher.wake();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        while let Some(p) = events.next().await {
            if let Ok(p) = p
                && p.event.kind() == "run_finished"
                && p.event.run_id() == Some(id)
            {
                return;
            }
        }
        panic!("the bus closed");
    });
    assert_eq!(f.history().get_run(id).unwrap().state, RunState::Failed);
    f.dispatcher.stop();
    looping.join().expect("the loop ends");
    // Nothing runs: the drain does not wait for its grace.
    f.dispatcher.drain(Duration::from_secs(24 * 3600));
}

/// A delayed run (a retry, a run for later) waits until the clock reaches its `not_before`,
/// whatever the system's time; the dispatch pass says when that is.
#[test]
fn a_delayed_run_is_due_when_the_clock_reaches_its_time() {
    // Long past on the system's clock.
    let t0 = utc(2026, 6, 1, 12, 0, 0);
    let at = t0 + chrono::Duration::hours(1);
    let f = Fixture::new("", t0, Vec::new());
    let run = NewRun {
        not_before: Some(at),
        ..new_run("gone")
    };
    let id = f.history().create_run(&run).unwrap();
    let state = || f.history().get_run(id).unwrap().state;
    assert_eq!(f.dispatcher.dispatch_ready().unwrap(), Some(at));
    assert_eq!(state(), RunState::Queued);
    f.clock.set(at - chrono::Duration::seconds(1));
    assert_eq!(f.dispatcher.dispatch_ready().unwrap(), Some(at));
    assert_eq!(state(), RunState::Queued);
    f.clock.set(at);
    assert_eq!(f.dispatcher.dispatch_ready().unwrap(), None);
    // Taken: its job is not loaded here, so it is closed as failed.
    assert_eq!(state(), RunState::Failed);
}
