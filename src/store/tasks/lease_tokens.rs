//! Lease tokens, and how a statement finds the task holding one.
//!
//! A token is the task's id (32 hex digits, the UUID without its dashes) followed by 32 random hex digits made by
//! the database at the claim. A statement finds a lease's task by its primary key and then compares the whole
//! token, so the task table needs no index of its leases: such an index was written twice in every task's life (at
//! the lease and at the settlement, as every index is on a non-HOT update) only to be read by the same calls.
//!
//! Tokens granted before this format (32 random hex digits) are still found, through a partial index that holds
//! them alone; no new token enters it.

use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend,
    sea_query::{Expr, SimpleExpr},
};

use crate::store::entity::task::Column;

/// Length of a token in the current format.
const TOKEN_LEN: usize = 64;
/// Length of a token of the earlier format, the only ones in the legacy index.
const LEGACY_LEN: usize = 32;

/// The SQL expression of a fresh token for the task row being updated.
pub fn fresh_token(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "replace(tasks.id, '-', '') || replace(gen_random_uuid()::text, '-', '')",
        _ => "replace(tasks.id, '-', '') || lower(hex(randomblob(16)))",
    }
}

/// The id of the task a token of the current format was granted for.
pub fn task_of(token: &str) -> Option<String> {
    if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    uuid::Uuid::try_parse(&token[..32]).ok().map(|id| id.hyphenated().to_string())
}

/// The condition of the legacy index, written as in its definition so that both planners can use it.
pub const LEGACY_PREDICATE: &str = "length(lease_id) = 32";

/// Tokens sorted by how a statement finds their tasks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeaseKeys {
    /// The tasks of current-format tokens, and those tokens.
    pub task_ids: Vec<String>,
    pub tokens: Vec<String>,
    /// Earlier-format tokens.
    pub legacy: Vec<String>,
}

impl LeaseKeys {
    /// Tokens of neither format can match no lease and are left out.
    pub fn of<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Self {
        let mut keys = Self::default();
        for token in tokens {
            if let Some(task_id) = task_of(token) {
                keys.task_ids.push(task_id);
                keys.tokens.push(token.to_owned());
            } else if token.len() == LEGACY_LEN {
                keys.legacy.push(token.to_owned());
            }
        }
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.legacy.is_empty()
    }

    /// Rows holding one of the tokens: found by primary key, or through the legacy index.
    pub fn condition(&self) -> Condition {
        let mut any = Condition::any();
        if !self.tokens.is_empty() {
            any = any.add(
                Condition::all()
                    .add(Column::Id.is_in(self.task_ids.iter().map(String::as_str)))
                    .add(Column::LeaseId.is_in(self.tokens.iter().map(String::as_str))),
            );
        }
        if !self.legacy.is_empty() {
            any = any.add(
                Condition::all()
                    .add(Expr::cust(LEGACY_PREDICATE))
                    .add(Column::LeaseId.is_in(self.legacy.iter().map(String::as_str))),
            );
        }
        if self.is_empty() {
            // Matches nothing, whatever the backend makes of an empty condition.
            any = any.add(SimpleExpr::from(Expr::cust("1 = 0")));
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_task() {
        let id = "01a23505-1567-7377-8448-6dacde61da7f";
        let token = format!("{}{}", id.replace('-', ""), "0123456789abcdef0123456789abcdef");
        assert_eq!(task_of(&token).as_deref(), Some(id));
        assert_eq!(task_of(&token.to_uppercase()), None, "tokens are lower case");
        assert_eq!(task_of(&token[..63]), None);
        assert_eq!(task_of(&format!("{}g", &token[..63])), None);
        assert_eq!(task_of("é".repeat(32).as_str()), None);
    }

    #[test]
    fn tokens_are_sorted_by_format() {
        let current = format!("{}{}", "01a2350515677377844869c4cbdf0329", "f".repeat(32));
        let legacy = "a".repeat(32);
        let keys = LeaseKeys::of([current.as_str(), legacy.as_str(), "nonsense", ""]);
        assert_eq!(keys.task_ids, vec!["01a23505-1567-7377-8448-69c4cbdf0329".to_owned()]);
        assert_eq!(keys.tokens, vec![current]);
        assert_eq!(keys.legacy, vec![legacy]);
        assert!(LeaseKeys::of(["nonsense"]).is_empty());
    }
}
