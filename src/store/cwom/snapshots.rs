//! ConstraintSnapshots: what could be used (time, budget, tools, risk...) when they were captured. Immutable: no
//! update exists, and the database refuses UPDATE and DELETE on the table.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{
    Change,
    enums::{DbEnum, stored},
    from_json, meta_from_json, meta_to_json, new_id, snapshot, to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb,
    spec::timestamp_micros,
    store::{
        audit::{self, Entry},
        entity::cwom::constraint_snapshot::{self, Column, Entity as Snapshots, Model},
    },
};

pub const KIND: &str = "ConstraintSnapshot";

pub fn to_pb(m: &Model) -> pb::ConstraintSnapshot {
    pb::ConstraintSnapshot {
        id: m.id.clone(),
        scope: stored::<pb::ConstraintScope>(&m.scope),
        captured_at: Some(timestamp(m.captured_at)),
        owner: from_json(&m.owner),
        constraints: from_json(&m.constraints),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
    }
}

/// Fills the defaults of the model: connectivity OK, risk tolerance MEDIUM.
fn with_defaults(constraints: Option<pb::ConstraintSet>) -> pb::ConstraintSet {
    let mut set = constraints.unwrap_or_default();
    let env = set.environment.get_or_insert_with(Default::default);
    if env.connectivity == 0 {
        env.connectivity = pb::Connectivity::Ok.into();
    }
    let risk = set.risk.get_or_insert_with(Default::default);
    if risk.tolerance == 0 {
        risk.tolerance = pb::RiskTolerance::Medium.into();
    }
    set
}

fn validate_constraints(v: &mut Violations, set: &pb::ConstraintSet) {
    let f = "constraint_snapshot.constraints";
    if let Some(time) = &set.time {
        if time.available_minutes.is_some_and(|m| m < 0) {
            v.push(&format!("{f}.time.available_minutes"), "must be >= 0");
        }
        if time.deadline.as_ref().is_some_and(|d| timestamp_micros(d).is_none()) {
            v.push(&format!("{f}.time.deadline"), "must be a valid timestamp");
        }
    }
    if let Some(score) = set.energy.as_ref().and_then(|e| e.score_0_5)
        && !(0.0..=5.0).contains(&score)
    {
        v.push(&format!("{f}.energy.score_0_5"), format!("must be between 0 and 5, got {score}"));
    }
    if let Some(budget) = &set.budget {
        for (name, value) in [("usd_available", budget.usd_available), ("burn_limit_usd", budget.burn_limit_usd)] {
            if value.is_some_and(|x| x < 0.0 || !x.is_finite()) {
                v.push(&format!("{f}.budget.{name}"), "must be >= 0");
            }
        }
    }
    if let Some(env) = &set.environment
        && pb::Connectivity::try_from(env.connectivity).is_err()
    {
        v.push(&format!("{f}.environment.connectivity"), format!("unknown value {}", env.connectivity));
    }
    if let Some(risk) = &set.risk
        && pb::RiskTolerance::try_from(risk.tolerance).is_err()
    {
        v.push(&format!("{f}.risk.tolerance"), format!("unknown value {}", risk.tolerance));
    }
}

pub async fn create(
    db: &DatabaseConnection,
    change: &Change,
    cs: pb::ConstraintSnapshot,
) -> Result<pb::ConstraintSnapshot> {
    let txn = db.begin().await?;
    let created = insert(&txn, change, cs).await?;
    txn.commit().await?;
    Ok(created)
}

pub async fn insert(
    db: &impl ConnectionTrait,
    change: &Change,
    cs: pb::ConstraintSnapshot,
) -> Result<pb::ConstraintSnapshot> {
    let mut v = Violations::default();
    let scope = validate::enumeration::<pb::ConstraintScope>(&mut v, "constraint_snapshot.scope", cs.scope, None);
    validate::actor(&mut v, "constraint_snapshot.owner", cs.owner.as_ref());
    let constraints = with_defaults(cs.constraints);
    validate_constraints(&mut v, &constraints);
    let captured_at = match &cs.captured_at {
        None => change.now,
        Some(ts) => timestamp_micros(ts).unwrap_or_else(|| {
            v.push("constraint_snapshot.captured_at", "must be a valid timestamp");
            change.now
        }),
    };
    v.into_result()?;
    let (Some(scope), Some(owner)) = (scope, cs.owner) else {
        return Err(Error::invalid("constraint_snapshot", "is invalid"));
    };
    let model = Model {
        id: new_id(),
        scope: scope.to_db().to_owned(),
        captured_at,
        owner_id: owner.actor_id.clone(),
        owner: to_json(&owner),
        constraints: to_json(&constraints),
        tags: to_json(&cs.tags),
        meta: meta_to_json(cs.meta),
        trace_id: Some(change.trace_id.clone()),
    };
    Snapshots::insert(constraint_snapshot::ActiveModel::from(model.clone())).exec_without_returning(db).await?;
    let created = to_pb(&model);
    let entry = Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id);
    audit::append(db, change.now, vec![entry]).await?;
    Ok(created)
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Model> {
    Snapshots::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("ConstraintSnapshot {id} not found")))
}

pub async fn list(
    db: &impl ConnectionTrait,
    scope: Option<pb::ConstraintScope>,
    owner_id: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<pb::ConstraintSnapshot>> {
    let mut query = Snapshots::find();
    if let Some(scope) = scope {
        query = query.filter(Column::Scope.eq(scope.to_db()));
    }
    if let Some(owner) = owner_id {
        query = query.filter(Column::OwnerId.eq(owner));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.lt(after));
    }
    Ok(query.order_by_desc(Column::Id).limit(limit).all(db).await?.iter().map(to_pb).collect())
}

/// The refusal of any change to a snapshot.
pub fn immutable() -> Error {
    Error::precondition("IMMUTABILITY_VIOLATION", "ConstraintSnapshot is immutable: capture a new snapshot instead")
}
