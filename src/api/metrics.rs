//! `GET /metrics`: Prometheus text exposition.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::wire::ErrorBody;
use super::{ApiError, ApiState};
use crate::history::RunState;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Runs by job and state, durations, queue depth and running count.
#[utoipa::path(get, path = "/metrics",
    summary = "Prometheus metrics: ferry_runs{job,state}, ferry_run_duration_seconds, ferry_queue_depth, ferry_running",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let running = state.handle.dispatcher.running_count();
    let (stats, queued) = state
        .db(|h| Ok((h.stats()?, h.count_in_state(RunState::Queued)?)))
        .await?;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP ferry_runs Runs kept in the history, by job and state."
    );
    let _ = writeln!(out, "# TYPE ferry_runs gauge");
    for s in &stats {
        let _ = writeln!(
            out,
            "ferry_runs{{job=\"{}\",state=\"{}\"}} {}",
            label(&s.job),
            s.state,
            s.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP ferry_run_duration_seconds Durations of the runs kept in the history, by job and state."
    );
    let _ = writeln!(out, "# TYPE ferry_run_duration_seconds summary");
    for s in stats.iter().filter(|s| s.state.is_closed()) {
        let labels = format!("job=\"{}\",state=\"{}\"", label(&s.job), s.state);
        let _ = writeln!(
            out,
            "ferry_run_duration_seconds_sum{{{labels}}} {:.3}",
            s.duration_seconds
        );
        let _ = writeln!(
            out,
            "ferry_run_duration_seconds_count{{{labels}}} {}",
            s.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP ferry_runs_finished_total Runs this daemon finished since it started, by job and end state."
    );
    let _ = writeln!(out, "# TYPE ferry_runs_finished_total counter");
    for ((job, end), n) in state.handle.dispatcher.finished_counts() {
        let _ = writeln!(
            out,
            "ferry_runs_finished_total{{job=\"{}\",state=\"{}\"}} {n}",
            label(&job),
            label(&end)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ferry_workers_warm Worker processes started and waiting for a run."
    );
    let _ = writeln!(out, "# TYPE ferry_workers_warm gauge");
    let _ = writeln!(
        out,
        "ferry_workers_warm {}",
        state.handle.dispatcher.warm_workers()
    );
    let loop_stats = &state.handle.stats;
    for (name, help, value) in [
        (
            "ferry_watch_scans_total",
            "Scans of watched folders since the daemon started.",
            &loop_stats.watch_scans,
        ),
        (
            "ferry_script_rescans_total",
            "Re-reads of the scripts folder since the daemon started.",
            &loop_stats.script_rescans,
        ),
        (
            "ferry_trigger_wakeups_total",
            "Passes of the trigger loop since the daemon started.",
            &loop_stats.wakeups,
        ),
        (
            "ferry_file_events_dropped_total",
            "File events dropped because the event queue was full (each causes a full rescan).",
            &loop_stats.events_dropped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(
            out,
            "{name} {}",
            value.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP ferry_queue_depth Runs queued and not started.");
    let _ = writeln!(out, "# TYPE ferry_queue_depth gauge");
    let _ = writeln!(out, "ferry_queue_depth {queued}");
    let _ = writeln!(out, "# HELP ferry_running Runs going now.");
    let _ = writeln!(out, "# TYPE ferry_running gauge");
    let _ = writeln!(out, "ferry_running {running}");
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response())
}
