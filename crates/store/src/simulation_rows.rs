//! What both backends share about simulated runs: which pending runs a claim may take, and the
//! columns a conversation's progress is written to.

use crate::model::SimulationProgress;

/// A pending simulated run and its project's room.
pub(crate) struct Claimable {
    pub run_id: i64,
    pub project_id: i64,
    pub concurrency: i64,
    /// The project's simulated runs in flight.
    pub running: i64,
}

impl Claimable {
    /// Oldest first, at most `limit`, and never beyond a project's concurrency: (project, run).
    pub(crate) fn pick(pending: Vec<Claimable>, limit: u32) -> Vec<(i64, i64)> {
        let mut room = std::collections::HashMap::new();
        let mut picked = Vec::new();
        for run in pending {
            if picked.len() >= limit as usize {
                break;
            }
            let free = room
                .entry(run.project_id)
                .or_insert(run.concurrency - run.running);
            if *free > 0 {
                *free -= 1;
                picked.push((run.project_id, run.run_id));
            }
        }
        picked
    }
}

/// The status of a run whose conversation is being played.
pub(crate) const IN_PROGRESS: &str = "in_progress";

/// Why a run whose lease expired is failed.
pub(crate) const ABANDONED: &str = "the conversation was interrupted: the server instance playing it stopped (its lease expired); start the run again";

/// `live_transcript`, `usage` and `stop_reason` as written.
pub(crate) fn progress_columns(
    progress: &SimulationProgress,
) -> (String, String, Option<&'static str>) {
    (
        serde_json::to_string(&progress.messages).expect("messages serialise"),
        serde_json::to_string(&progress.usage).expect("usage serialises"),
        progress.stop_reason.map(|r| r.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_fills_each_project_up_to_its_concurrency() {
        let run = |run_id, project_id, concurrency, running| Claimable {
            run_id,
            project_id,
            concurrency,
            running,
        };
        let pending = vec![
            run(1, 1, 2, 1),
            run(2, 1, 2, 1),
            run(3, 2, 4, 0),
            run(4, 1, 2, 1),
            run(5, 2, 4, 0),
        ];
        assert_eq!(Claimable::pick(pending, 3), [(1, 1), (2, 3), (2, 5)]);
    }
}
