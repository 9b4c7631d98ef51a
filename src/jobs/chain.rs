//! Chaining: a job's `after = { job = "export_orders", on = "success" }` (or a list of such)
//! starts a run of it each time a run of the upstream job ends that way. The downstream run's
//! trigger is `{ kind = "job", of = RUN, job = "export_orders", state = "succeeded", summary =
//! ... }`.
//!
//! Each upstream run fires its downstream jobs once, whoever ran it (the daemon, `ferry run`)
//! and whatever happened in between (a restart): runs are recorded with `chained = 0`, the
//! daemon's chain pass fires what they call for, skipping a downstream job that already has a
//! run `of` that upstream run, and then marks them chained. A failed run that will be retried
//! fires nothing; its last attempt decides.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::history::RunState;

/// When an upstream run's end starts the downstream job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum On {
    /// It succeeded.
    Success,
    /// It failed or timed out (not cancelled, not skipped).
    Failure,
    /// It succeeded, failed or timed out.
    Any,
}

impl On {
    /// The names used in job specs.
    pub const NAMES: &'static [(&'static str, On)] = &[
        ("success", On::Success),
        ("failure", On::Failure),
        ("any", On::Any),
    ];

    /// Whether a run that ended in `state` matches.
    pub fn matches(self, state: RunState) -> bool {
        match self {
            On::Success => state == RunState::Succeeded,
            On::Failure => matches!(state, RunState::Failed | RunState::TimedOut),
            On::Any => matches!(
                state,
                RunState::Succeeded | RunState::Failed | RunState::TimedOut
            ),
        }
    }
}

/// One upstream dependency of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct After {
    /// The upstream job.
    pub job: String,
    /// The ends that start this job.
    pub on: Vec<On>,
}

impl After {
    /// Whether a run of `job` that ended in `state` starts this job.
    pub fn fires(&self, job: &str, state: RunState) -> bool {
        self.job == job && self.on.iter().any(|o| o.matches(state))
    }
}

/// A cycle in the `after` graph of `jobs` (job name → its upstream jobs) that goes through
/// `start`, as the names along it (`a → b → a`), if any.
pub fn cycle_through(jobs: &BTreeMap<String, Vec<String>>, start: &str) -> Option<Vec<String>> {
    // Depth-first search from `start` along upstream edges, back to `start`.
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    fn walk(
        jobs: &BTreeMap<String, Vec<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let Some(ups) = path.last().and_then(|n| jobs.get(n)).cloned() else {
            return false;
        };
        for up in ups {
            if up == start {
                path.push(up);
                return true;
            }
            if seen.insert(up.clone()) {
                path.push(up);
                if walk(jobs, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(jobs, start, &mut path, &mut seen).then(|| {
        // The path runs against the edges (from a job to its upstream); show it in the
        // direction runs flow.
        path.reverse();
        path
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(j, ups)| (j.to_string(), ups.iter().map(|u| u.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycles_are_found_with_their_names() {
        let g = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &["a"])]);
        assert_eq!(
            cycle_through(&g, "a").unwrap(),
            ["a", "b", "c", "a"].map(String::from)
        );
        assert!(cycle_through(&g, "d").is_none(), "d hangs off the cycle");
        let g = graph(&[("a", &["a"])]);
        assert_eq!(
            cycle_through(&g, "a").unwrap(),
            ["a", "a"].map(String::from)
        );
        let g = graph(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
        assert!(cycle_through(&g, "a").is_none());
    }

    #[test]
    fn ends_match_as_documented() {
        assert!(On::Success.matches(RunState::Succeeded));
        assert!(!On::Success.matches(RunState::Failed));
        assert!(On::Failure.matches(RunState::TimedOut));
        assert!(!On::Failure.matches(RunState::Cancelled));
        assert!(!On::Any.matches(RunState::Skipped));
        let a = After {
            job: "up".into(),
            on: vec![On::Success],
        };
        assert!(a.fires("up", RunState::Succeeded));
        assert!(!a.fires("other", RunState::Succeeded));
    }
}
