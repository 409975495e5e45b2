//! controltower.v1.AuditService, and the live tail that WatchAuditEvents and WatchTasks share.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::paging;
use crate::{
    auth,
    convert::timestamp,
    error::{Error, Result},
    json::json_to_struct,
    limits::{self, StreamPermit},
    pb::{self, audit_service_server::AuditService},
    server::AppState,
    spec::timestamp_micros,
    store::{
        audit::{self, Action, Cursor, Filter},
        audit_chain,
        entity::audit_log::Model as AuditRow,
    },
};

const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 1000;
/// How often an idle tail looks for new entries.
const POLL: Duration = Duration::from_millis(100);
const TAIL_BATCH: u64 = 500;

pub struct AuditServiceImpl {
    state: Arc<AppState>,
}

impl AuditServiceImpl {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

pub fn event(row: &AuditRow) -> pb::AuditEvent {
    pb::AuditEvent {
        id: row.id,
        ts: Some(timestamp(row.ts)),
        actor_kind: row.actor_kind.clone(),
        actor_id: row.actor_id.clone(),
        action: row.action.clone(),
        entity_kind: row.entity_kind.clone(),
        entity_id: row.entity_id.clone(),
        before: row.before.as_ref().map(json_to_struct),
        after: row.after.as_ref().map(json_to_struct),
        note: row.note.clone().unwrap_or_default(),
        trace_id: row.trace_id.clone().unwrap_or_default(),
        cursor: Cursor::of(row).encode(),
    }
}

pub fn filter(f: Option<pb::AuditFilter>) -> Result<Filter> {
    let f = f.unwrap_or_default();
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    if !f.action.is_empty() && !Action::ALL.iter().any(|a| a.as_str() == f.action) {
        let known: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        return Err(Error::invalid(
            "filter.action",
            format!("must be one of {}, got {:?}", known.join(", "), f.action),
        ));
    }
    let time = |field: &str, ts: Option<pbjson_types::Timestamp>| {
        ts.map(|t| timestamp_micros(&t).ok_or_else(|| Error::invalid(field, "must be a valid timestamp"))).transpose()
    };
    Ok(Filter {
        entity_kind: non_empty(f.entity_kind),
        entity_id: non_empty(f.entity_id),
        trace_id: non_empty(f.trace_id),
        actor_id: non_empty(f.actor_id),
        action: non_empty(f.action),
        since: time("filter.since", f.since)?,
        until: time("filter.until", f.until)?,
    })
}

/// Where a tail starts: after the given cursor, or at the current head.
pub async fn start(state: &AppState, cursor: &str) -> Result<Cursor> {
    if cursor.is_empty() {
        return Ok(audit::head(&state.db).await?);
    }
    Cursor::decode(cursor).ok_or_else(|| Error::invalid("cursor", "is not a cursor from an event"))
}

/// Follows the audit log from `cursor`, handing each batch of matching entries to `deliver`, until the client goes
/// away, `deliver` says stop, or the server shuts down. Nothing is skipped or repeated (see `audit::tail`).
pub fn follow<T, F, Fut>(
    state: Arc<AppState>,
    filter: Filter,
    mut cursor: Cursor,
    permit: StreamPermit,
    deliver: F,
) -> ReceiverStream<Result<T, Status>>
where
    T: Send + 'static,
    F: Fn(Arc<AppState>, Vec<AuditRow>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<T>>> + Send,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        // Held while the stream is open: it counts against the caller's stream limit.
        let _permit = permit;
        loop {
            let batch = match audit::tail(&state.db, &filter, cursor, TAIL_BATCH).await {
                Ok((rows, next)) => {
                    cursor = next;
                    rows
                }
                Err(err) => {
                    tracing::warn!(error = %err, "audit tail query failed; retrying");
                    Vec::new()
                }
            };
            let full = batch.len() as u64 == TAIL_BATCH;
            if !batch.is_empty() {
                match deliver(state.clone(), batch).await {
                    Ok(items) => {
                        for item in items {
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err.into())).await;
                        return;
                    }
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = state.shutting_down.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    });
    ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl AuditService for AuditServiceImpl {
    #[tracing::instrument(skip_all)]
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let token_filter = request.filter.clone().unwrap_or_default();
        let before = match paging::decode(&request.page_token, &token_filter)? {
            None => None,
            Some(after) => Some(after.as_i64().ok_or_else(|| Error::invalid("page_token", "is malformed"))?),
        };
        let rows =
            audit::list(&self.state.db, &filter(request.filter)?, before, limit + 1).await.map_err(Error::from)?;
        let (rows, more) = paging::split_page(rows, limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&serde_json::json!(last.id), &token_filter),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse { events: rows.iter().map(event).collect(), next_page_token }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_audit_chain(
        &self,
        _request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        let report = audit_chain::verify(&self.state.db).await.map_err(Error::from)?;
        if let Some(broken) = &report.broken {
            tracing::error!(seq = broken.seq, audit_id = broken.audit_id, reason = %broken.reason, "audit chain broken");
        }
        let (head_seq, head_hash) = report.head.unwrap_or_default();
        Ok(Response::new(pb::VerifyAuditChainResponse {
            intact: report.broken.is_none(),
            entries_verified: report.verified,
            entries_unsealed: report.unsealed,
            head_seq: head_seq as u64,
            head_hash,
            first_broken: report.broken.map(|b| pb::BrokenLink {
                seq: b.seq as u64,
                audit_id: b.audit_id,
                reason: b.reason,
            }),
        }))
    }

    type WatchAuditEventsStream = ReceiverStream<Result<pb::AuditEvent, Status>>;

    #[tracing::instrument(skip_all)]
    async fn watch_audit_events(
        &self,
        request: Request<pb::WatchAuditEventsRequest>,
    ) -> Result<Response<Self::WatchAuditEventsStream>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let filter = filter(request.filter)?;
        let cursor = start(&self.state, &request.cursor).await?;
        let permit = self.state.streams.acquire(limits::key(caller.as_deref()))?;
        let stream = follow(self.state.clone(), filter, cursor, permit, |_, rows| async move {
            Ok(rows.iter().map(event).collect())
        });
        Ok(Response::new(stream))
    }
}
