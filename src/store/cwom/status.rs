//! The status machines of Issues and Runs. Every status change is checked here; an illegal one is
//! FAILED_PRECONDITION naming both states.

use super::enums::DbEnum;
use crate::{
    error::{Error, Result},
    pb::WorkStatus::{self, *},
};

/// Issue: planned -> ready -> running -> done | failed, with blocked as a detour, canceled from any open state, and a
/// done issue may go under review (-> done | failed).
pub fn issue_allows(from: WorkStatus, to: WorkStatus) -> bool {
    matches!(
        (from, to),
        (Planned, Ready | Running | Blocked | Canceled)
            | (Ready, Running | Blocked | Canceled)
            | (Running, Done | Failed | Blocked | Canceled)
            | (Blocked, Ready | Running | Canceled)
            | (Done, UnderReview)
            | (UnderReview, Done | Failed)
    )
}

/// Run: planned -> running -> done | failed, either of which may go under review (-> done | failed); a run that has
/// not ended may be canceled.
pub fn run_allows(from: WorkStatus, to: WorkStatus) -> bool {
    matches!(
        (from, to),
        (Planned, Running | Canceled)
            | (Running, Done | Failed | Canceled)
            | (Done | Failed, UnderReview)
            | (UnderReview, Done | Failed)
    )
}

pub fn check(kind: &str, allows: fn(WorkStatus, WorkStatus) -> bool, from: WorkStatus, to: WorkStatus) -> Result<()> {
    if allows(from, to) {
        return Ok(());
    }
    Err(Error::precondition(
        "INVALID_TRANSITION",
        format!("{kind} status cannot change from {} to {}", from.to_db(), to.to_db()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [WorkStatus; 8] = [Planned, Ready, Running, Blocked, Done, Failed, Canceled, UnderReview];

    #[test]
    fn terminal_states_stay_terminal() {
        for to in ALL {
            assert!(!issue_allows(Failed, to) && !issue_allows(Canceled, to));
            assert!(!run_allows(Canceled, to));
        }
    }

    #[test]
    fn the_seed_paths_are_legal() {
        for (from, to) in [
            (Planned, Running),
            (Running, Done),
            (Running, Failed),
            (Done, UnderReview),
            (UnderReview, Done),
            (UnderReview, Failed),
        ] {
            assert!(issue_allows(from, to), "issue {from:?} -> {to:?}");
            assert!(run_allows(from, to), "run {from:?} -> {to:?}");
        }
        assert!(run_allows(Failed, UnderReview) && !issue_allows(Failed, UnderReview));
        let err = check("Issue", issue_allows, Done, Running).unwrap_err();
        assert_eq!(err.to_string(), "Issue status cannot change from done to running");
    }
}
