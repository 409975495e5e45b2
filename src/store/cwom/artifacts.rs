//! Artifacts: what a run produced (logs, traces, reports, patches...), each with a URI and, for files, a digest.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{
    Change,
    enums::{DbEnum, stored},
    from_json, meta_from_json, meta_to_json, new_id, object_ref, snapshot, to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb::{self, ObjectKind},
    store::{
        audit::{self, Entry},
        entity::cwom::artifact::{self, Column, Entity as Artifacts, Model},
    },
};

pub const KIND: &str = "Artifact";

pub fn to_pb(m: &Model) -> pb::Artifact {
    pb::Artifact {
        id: m.id.clone(),
        produced_by: Some(object_ref(ObjectKind::Run, &m.run_id)),
        for_issue: Some(object_ref(ObjectKind::Issue, &m.issue_id)),
        r#type: stored::<pb::ArtifactType>(&m.artifact_type),
        title: m.title.clone(),
        uri: m.uri.clone(),
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        size_bytes: m.size_bytes,
        preview: m.preview.clone(),
        verification: from_json(&m.verification),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
    }
}

pub async fn create(db: &DatabaseConnection, change: &Change, a: pb::Artifact) -> Result<pb::Artifact> {
    let txn = db.begin().await?;
    let created = insert(&txn, change, a).await?;
    txn.commit().await?;
    Ok(created)
}

pub async fn insert(db: &impl ConnectionTrait, change: &Change, a: pb::Artifact) -> Result<pb::Artifact> {
    let mut v = Violations::default();
    let run_id = validate::reference(&mut v, "artifact.produced_by", a.produced_by.as_ref(), ObjectKind::Run);
    let issue_id = validate::optional_reference(&mut v, "artifact.for_issue", a.for_issue.as_ref(), ObjectKind::Issue);
    let artifact_type = validate::enumeration::<pb::ArtifactType>(&mut v, "artifact.type", a.r#type, None);
    v.length("artifact.title", &a.title, 1, 512);
    v.length("artifact.uri", &a.uri, 1, 2000);
    v.length("artifact.digest", &a.digest, 0, 128);
    v.length("artifact.media_type", &a.media_type, 0, 128);
    v.length("artifact.preview", &a.preview, 0, 4000);
    if a.size_bytes.is_some_and(|s| s < 0) {
        v.push("artifact.size_bytes", "must be >= 0");
    }
    let mut verification = a.verification.clone().unwrap_or_default();
    if verification.status == 0 {
        verification.status = pb::VerificationStatus::Unverified.into();
    }
    if pb::VerificationStatus::try_from(verification.status).is_err() {
        v.push("artifact.verification.status", format!("unknown value {}", verification.status));
    }
    v.into_result()?;
    let (Some(run_id), Some(artifact_type)) = (run_id, artifact_type) else {
        return Err(Error::invalid("artifact", "is invalid"));
    };
    let run = super::runs::find(db, &run_id)
        .await
        .map_err(|_| Error::NotFound(format!("artifact.produced_by: Run {run_id} not found")))?;
    let issue_id = match issue_id {
        None => run.issue_id.clone(),
        Some(id) if id == run.issue_id => id,
        Some(id) => {
            return Err(Error::invalid(
                "artifact.for_issue",
                format!("must be the issue of the run that produced it ({}), got {id}", run.issue_id),
            ));
        }
    };
    let model = Model {
        id: new_id(),
        run_id,
        issue_id,
        artifact_type: artifact_type.to_db().to_owned(),
        title: a.title,
        uri: a.uri,
        digest: a.digest,
        media_type: a.media_type,
        size_bytes: a.size_bytes,
        preview: a.preview,
        verification: to_json(&verification),
        tags: to_json(&a.tags),
        meta: meta_to_json(a.meta),
        trace_id: Some(change.trace_id.clone()),
        created_at: change.now,
        updated_at: change.now,
    };
    Artifacts::insert(artifact::ActiveModel::from(model.clone())).exec_without_returning(db).await?;
    let created = to_pb(&model);
    let entry = Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id);
    audit::append(db, change.now, vec![entry]).await?;
    Ok(created)
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<pb::Artifact> {
    let row = Artifacts::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Artifact {id} not found")))?;
    Ok(to_pb(&row))
}

#[derive(Debug, Clone, Default)]
pub struct ArtifactFilter {
    pub run_id: Option<String>,
    pub issue_id: Option<String>,
    pub artifact_type: Option<pb::ArtifactType>,
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &ArtifactFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<pb::Artifact>> {
    let mut query = Artifacts::find();
    if let Some(id) = &filter.run_id {
        query = query.filter(Column::RunId.eq(id.as_str()));
    }
    if let Some(id) = &filter.issue_id {
        query = query.filter(Column::IssueId.eq(id.as_str()));
    }
    if let Some(t) = filter.artifact_type {
        query = query.filter(Column::ArtifactType.eq(t.to_db()));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.lt(after));
    }
    Ok(query.order_by_desc(Column::Id).limit(limit).all(db).await?.iter().map(to_pb).collect())
}
