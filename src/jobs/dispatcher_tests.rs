//! The dispatch loop on a thread of its own, on a real SQLite history: woken by what is queued,
//! stopped when asked, drained at once when nothing runs.

use std::time::Duration;

use crate::history::RunState;
use crate::jobs::testkit::Fixture;

#[test]
fn the_loop_handles_what_it_is_woken_for_and_stops_when_asked() {
    let f = Fixture::new("", chrono::Utc::now(), Vec::new());
    let mut events = f.dispatcher.events().listen();
    let looping = {
        let d = f.dispatcher.clone();
        std::thread::spawn(move || d.run())
    };
    // A run of a job this daemon does not have: the loop, woken, closes it as failed.
    let id = f
        .history()
        .create_run(&crate::history::conformance::new_run("gone"))
        .unwrap();
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
