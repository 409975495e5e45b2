//! The six join tables between CWOM objects: (left id, right id) pairs with the time they were made.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait,
    sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query},
};

use crate::{clock::Micros, error::Result, pb::ObjectKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    IssueContextPacket,
    IssueDoctrineRef,
    IssueConstraintSnapshot,
    RunContextPacket,
    RunDoctrineRef,
    ContextPacketDoctrineRef,
}

impl Link {
    /// Table, left column, right column.
    fn schema(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::IssueContextPacket => ("cwom_issue_context_packets", "issue_id", "context_packet_id"),
            Self::IssueDoctrineRef => ("cwom_issue_doctrine_refs", "issue_id", "doctrine_ref_id"),
            Self::IssueConstraintSnapshot => ("cwom_issue_constraint_snapshots", "issue_id", "constraint_snapshot_id"),
            Self::RunContextPacket => ("cwom_run_context_packets", "run_id", "context_packet_id"),
            Self::RunDoctrineRef => ("cwom_run_doctrine_refs", "run_id", "doctrine_ref_id"),
            Self::ContextPacketDoctrineRef => {
                ("cwom_context_packet_doctrine_refs", "context_packet_id", "doctrine_ref_id")
            }
        }
    }

    /// The kind of object on the right side.
    pub fn right_kind(self) -> ObjectKind {
        match self {
            Self::IssueContextPacket | Self::RunContextPacket => ObjectKind::ContextPacket,
            Self::IssueDoctrineRef | Self::RunDoctrineRef | Self::ContextPacketDoctrineRef => ObjectKind::DoctrineRef,
            Self::IssueConstraintSnapshot => ObjectKind::ConstraintSnapshot,
        }
    }
}

/// Adds a link; returns false when it already existed.
pub async fn add(db: &impl ConnectionTrait, link: Link, left: &str, right: &str, now: Micros) -> Result<bool> {
    let (table, l, r) = link.schema();
    let insert = Query::insert()
        .into_table(Alias::new(table))
        .columns([Alias::new(l), Alias::new(r), Alias::new("created_at")])
        .values_panic([left.into(), right.into(), now.into()])
        .on_conflict(OnConflict::columns([Alias::new(l), Alias::new(r)]).do_nothing().to_owned())
        .to_owned();
    let result = db.execute(&insert).await?;
    Ok(result.rows_affected() > 0)
}

/// Removes a link; returns false when there was none.
pub async fn remove(db: &impl ConnectionTrait, link: Link, left: &str, right: &str) -> Result<bool> {
    let (table, l, r) = link.schema();
    let delete = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(Alias::new(l)).eq(left))
        .and_where(Expr::col(Alias::new(r)).eq(right))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

/// The right-side ids linked to each of `lefts`, in the order the links were made.
pub async fn linked(db: &impl ConnectionTrait, link: Link, lefts: &[String]) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if lefts.is_empty() {
        return Ok(out);
    }
    let (table, l, r) = link.schema();
    let select = Query::select()
        .columns([Alias::new(l), Alias::new(r)])
        .from(Alias::new(table))
        .and_where(Expr::col(Alias::new(l)).is_in(lefts.iter().map(String::as_str)))
        .order_by(Alias::new("created_at"), Order::Asc)
        .order_by(Alias::new(r), Order::Asc)
        .to_owned();
    for row in db.query_all(&select).await? {
        let left: String = row.try_get_by_index(0)?;
        let right: String = row.try_get_by_index(1)?;
        out.entry(left).or_default().push(right);
    }
    Ok(out)
}
