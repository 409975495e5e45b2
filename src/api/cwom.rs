//! controltower.v1.CwomService: thin adapters over `store::cwom`.

use std::sync::Arc;

use serde_json::json;
use tonic::{Request, Response, Status};

use super::{metadata, paging};
use crate::{
    auth::{self, Role},
    error::{Error, Result},
    pb::{self, cwom_service_server::CwomService},
    server::AppState,
    store::audit,
    store::cwom::{
        Change, artifacts, doctrine, issues,
        links::Link,
        packets, parse_id, repos,
        runs::{self, RunUpdate},
        snapshots,
    },
};

const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 1000;

pub struct CwomServiceImpl {
    state: Arc<AppState>,
}

impl CwomServiceImpl {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// The caller (the operator identity when auth is off), now, and the caller's trace id (or a new one).
    fn change<T>(&self, request: &Request<T>) -> Result<Change> {
        Ok(Change {
            now: self.state.clock.now(),
            actor: auth::caller(request).map_or_else(|| self.state.operator.clone(), |who| who.actor()),
            trace_id: metadata::trace_id(request.metadata())?.unwrap_or_else(metadata::new_trace_id),
        })
    }

    /// Agents change only the objects they created (the actor of the object's `created` audit entry).
    async fn ensure_own<T>(&self, request: &Request<T>, kind: &'static str, id: &str) -> Result<()> {
        let Some(who) = auth::caller(request).filter(|who| who.is(Role::Agent)) else { return Ok(()) };
        let id = parse_id("id", id)?;
        match audit::creator(&self.state.db, kind, &id).await? {
            Some(creator) if creator == who.id => Ok(()),
            _ => Err(auth::deny(&who, format_args!("change {kind} {id:?}, which it did not create"))),
        }
    }
}

/// An enum filter: UNSPECIFIED matches everything, an unknown value is refused.
fn enum_filter<E: TryFrom<i32>>(field: &str, raw: i32) -> Result<Option<E>> {
    if raw == 0 {
        return Ok(None);
    }
    E::try_from(raw).map(Some).map_err(|_| Error::invalid(field, format!("unknown value {raw}")))
}

fn id_filter(field: &str, id: &str) -> Result<Option<String>> {
    if id.is_empty() { Ok(None) } else { parse_id(field, id).map(Some) }
}

/// Page size, the key to continue after, and a closure making the next token from the last key.
struct Page<F> {
    limit: u64,
    after: Option<serde_json::Value>,
    filter: F,
}

impl<F: serde::Serialize> Page<F> {
    fn new(page_size: i32, page_token: &str, filter: F) -> Result<Self> {
        let limit = paging::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = paging::decode(page_token, &filter)?;
        Ok(Self { limit, after, filter })
    }

    fn after_id(&self) -> Result<Option<String>> {
        paging::after_string(self.after.clone())
    }

    /// Cuts the `limit + 1` rows fetched to a page and makes the next token from the last item's key.
    fn finish<T>(&self, rows: Vec<T>, key: impl Fn(&T) -> serde_json::Value) -> (Vec<T>, String) {
        let (rows, more) = paging::split_page(rows, self.limit);
        let token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&key(last), &self.filter),
            _ => String::new(),
        };
        (rows, token)
    }
}

fn ok<T>(result: Result<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl CwomService for CwomServiceImpl {
    async fn create_repo(&self, request: Request<pb::CreateRepoRequest>) -> Result<Response<pb::Repo>, Status> {
        let change = self.change(&request)?;
        let repo = request.into_inner().repo.ok_or_else(|| Error::invalid("repo", "is required"))?;
        ok(repos::create(&self.state.db, &change, repo).await)
    }

    async fn get_repo(&self, request: Request<pb::GetObjectRequest>) -> Result<Response<pb::Repo>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(repos::get(&self.state.db, &id).await)
    }

    async fn list_repos(
        &self,
        request: Request<pb::ListReposRequest>,
    ) -> Result<Response<pb::ListReposResponse>, Status> {
        let r = request.into_inner();
        let visibility = enum_filter::<pb::Visibility>("visibility", r.visibility)?;
        let page = Page::new(r.page_size, &r.page_token, json!({ "visibility": r.visibility }))?;
        let rows = repos::list(&self.state.db, visibility, page.after_id()?.as_deref(), page.limit + 1).await?;
        let (repos, next_page_token) = page.finish(rows, |r| json!(r.id));
        ok(Ok(pb::ListReposResponse { repos, next_page_token }))
    }

    async fn update_repo(&self, request: Request<pb::UpdateRepoRequest>) -> Result<Response<pb::Repo>, Status> {
        let change = self.change(&request)?;
        let id = request.get_ref().repo.as_ref().map(|r| r.id.clone()).unwrap_or_default();
        self.ensure_own(&request, repos::KIND, &id).await?;
        let repo = request.into_inner().repo.ok_or_else(|| Error::invalid("repo", "is required"))?;
        ok(repos::update(&self.state.db, &change, repo).await)
    }

    async fn create_issue(&self, request: Request<pb::CreateIssueRequest>) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        let issue = request.into_inner().issue.ok_or_else(|| Error::invalid("issue", "is required"))?;
        ok(issues::create(&self.state.db, &change, issue).await)
    }

    async fn get_issue(&self, request: Request<pb::GetObjectRequest>) -> Result<Response<pb::Issue>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(issues::load(&self.state.db, &id).await)
    }

    async fn list_issues(
        &self,
        request: Request<pb::ListIssuesRequest>,
    ) -> Result<Response<pb::ListIssuesResponse>, Status> {
        let r = request.into_inner();
        let filter = issues::IssueFilter {
            repo_id: id_filter("repo_id", &r.repo_id)?,
            status: enum_filter("status", r.status)?,
            issue_type: enum_filter("type", r.r#type)?,
            priority: enum_filter("priority", r.priority)?,
        };
        let key = json!({ "repo_id": r.repo_id, "status": r.status, "type": r.r#type, "priority": r.priority });
        let page = Page::new(r.page_size, &r.page_token, key)?;
        let rows = issues::list(&self.state.db, &filter, page.after_id()?.as_deref(), page.limit + 1).await?;
        let (issues, next_page_token) = page.finish(rows, |i| json!(i.id));
        ok(Ok(pb::ListIssuesResponse { issues, next_page_token }))
    }

    async fn update_issue(&self, request: Request<pb::UpdateIssueRequest>) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        let id = request.get_ref().issue.as_ref().map(|i| i.id.clone()).unwrap_or_default();
        self.ensure_own(&request, issues::KIND, &id).await?;
        let issue = request.into_inner().issue.ok_or_else(|| Error::invalid("issue", "is required"))?;
        ok(issues::update(&self.state.db, &change, issue).await)
    }

    async fn update_issue_status(
        &self,
        request: Request<pb::UpdateIssueStatusRequest>,
    ) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        self.ensure_own(&request, issues::KIND, &request.get_ref().id).await?;
        let r = request.into_inner();
        let to = pb::WorkStatus::try_from(r.status)
            .map_err(|_| Error::invalid("status", format!("unknown value {}", r.status)))?;
        ok(issues::update_status(&self.state.db, &change, &r.id, to, &r.note).await)
    }

    async fn create_context_packet(
        &self,
        request: Request<pb::CreateContextPacketRequest>,
    ) -> Result<Response<pb::ContextPacket>, Status> {
        let change = self.change(&request)?;
        let packet =
            request.into_inner().context_packet.ok_or_else(|| Error::invalid("context_packet", "is required"))?;
        ok(packets::create(&self.state.db, &change, packet).await)
    }

    async fn get_context_packet(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::ContextPacket>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(packets::get(&self.state.db, &id).await)
    }

    async fn list_context_packets(
        &self,
        request: Request<pb::ListContextPacketsRequest>,
    ) -> Result<Response<pb::ListContextPacketsResponse>, Status> {
        let r = request.into_inner();
        let issue_id = id_filter("issue_id", &r.issue_id)?;
        let page = Page::new(r.page_size, &r.page_token, json!({ "issue_id": r.issue_id }))?;
        let rows =
            packets::list(&self.state.db, issue_id.as_deref(), page.after_id()?.as_deref(), page.limit + 1).await?;
        let (context_packets, next_page_token) = page.finish(rows, |p| json!(p.id));
        ok(Ok(pb::ListContextPacketsResponse { context_packets, next_page_token }))
    }

    async fn update_context_packet(
        &self,
        _request: Request<pb::UpdateContextPacketRequest>,
    ) -> Result<Response<pb::ContextPacket>, Status> {
        Err(packets::immutable().into())
    }

    async fn create_constraint_snapshot(
        &self,
        request: Request<pb::CreateConstraintSnapshotRequest>,
    ) -> Result<Response<pb::ConstraintSnapshot>, Status> {
        let change = self.change(&request)?;
        let cs = request
            .into_inner()
            .constraint_snapshot
            .ok_or_else(|| Error::invalid("constraint_snapshot", "is required"))?;
        ok(snapshots::create(&self.state.db, &change, cs).await)
    }

    async fn get_constraint_snapshot(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::ConstraintSnapshot>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(snapshots::find(&self.state.db, &id).await.map(|m| snapshots::to_pb(&m)))
    }

    async fn list_constraint_snapshots(
        &self,
        request: Request<pb::ListConstraintSnapshotsRequest>,
    ) -> Result<Response<pb::ListConstraintSnapshotsResponse>, Status> {
        let r = request.into_inner();
        let scope = enum_filter::<pb::ConstraintScope>("scope", r.scope)?;
        let owner = (!r.owner_id.is_empty()).then_some(r.owner_id.as_str());
        let page = Page::new(r.page_size, &r.page_token, json!({ "scope": r.scope, "owner_id": r.owner_id }))?;
        let rows = snapshots::list(&self.state.db, scope, owner, page.after_id()?.as_deref(), page.limit + 1).await?;
        let (constraint_snapshots, next_page_token) = page.finish(rows, |c| json!(c.id));
        ok(Ok(pb::ListConstraintSnapshotsResponse { constraint_snapshots, next_page_token }))
    }

    async fn update_constraint_snapshot(
        &self,
        _request: Request<pb::UpdateConstraintSnapshotRequest>,
    ) -> Result<Response<pb::ConstraintSnapshot>, Status> {
        Err(snapshots::immutable().into())
    }

    async fn create_doctrine_ref(
        &self,
        request: Request<pb::CreateDoctrineRefRequest>,
    ) -> Result<Response<pb::DoctrineRef>, Status> {
        let change = self.change(&request)?;
        let d = request.into_inner().doctrine_ref.ok_or_else(|| Error::invalid("doctrine_ref", "is required"))?;
        ok(doctrine::create(&self.state.db, &change, d).await)
    }

    async fn get_doctrine_ref(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::DoctrineRef>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(doctrine::get(&self.state.db, &id).await)
    }

    async fn list_doctrine_refs(
        &self,
        request: Request<pb::ListDoctrineRefsRequest>,
    ) -> Result<Response<pb::ListDoctrineRefsResponse>, Status> {
        let r = request.into_inner();
        let filter = doctrine::DoctrineFilter {
            namespace: (!r.namespace.is_empty()).then(|| r.namespace.clone()),
            doctrine_type: enum_filter("type", r.r#type)?,
            priority: enum_filter("priority", r.priority)?,
        };
        let key = json!({ "namespace": r.namespace, "type": r.r#type, "priority": r.priority });
        let page = Page::new(r.page_size, &r.page_token, key)?;
        let after = match &page.after {
            None => None,
            Some(after) => Some(
                serde_json::from_value::<(String, String, String)>(after.clone())
                    .map_err(|_| Error::invalid("page_token", "is malformed"))?,
            ),
        };
        let rows = doctrine::list(&self.state.db, &filter, after, page.limit + 1).await?;
        let (doctrine_refs, next_page_token) = page.finish(rows, |d| json!([d.namespace, d.name, d.version]));
        ok(Ok(pb::ListDoctrineRefsResponse { doctrine_refs, next_page_token }))
    }

    async fn update_doctrine_ref(
        &self,
        request: Request<pb::UpdateDoctrineRefRequest>,
    ) -> Result<Response<pb::DoctrineRef>, Status> {
        let change = self.change(&request)?;
        let id = request.get_ref().doctrine_ref.as_ref().map(|d| d.id.clone()).unwrap_or_default();
        self.ensure_own(&request, doctrine::KIND, &id).await?;
        let d = request.into_inner().doctrine_ref.ok_or_else(|| Error::invalid("doctrine_ref", "is required"))?;
        ok(doctrine::update(&self.state.db, &change, d).await)
    }

    async fn create_run(&self, request: Request<pb::CreateRunRequest>) -> Result<Response<pb::Run>, Status> {
        let change = self.change(&request)?;
        let run = request.into_inner().run.ok_or_else(|| Error::invalid("run", "is required"))?;
        ok(runs::create(&self.state.db, &change, run).await)
    }

    async fn get_run(&self, request: Request<pb::GetObjectRequest>) -> Result<Response<pb::Run>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(runs::load(&self.state.db, &id).await)
    }

    async fn list_runs(&self, request: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let r = request.into_inner();
        let filter = runs::RunFilter {
            issue_id: id_filter("issue_id", &r.issue_id)?,
            repo_id: id_filter("repo_id", &r.repo_id)?,
            status: enum_filter("status", r.status)?,
            mode: enum_filter("mode", r.mode)?,
        };
        let key = json!({ "issue_id": r.issue_id, "repo_id": r.repo_id, "status": r.status, "mode": r.mode });
        let page = Page::new(r.page_size, &r.page_token, key)?;
        let rows = runs::list(&self.state.db, &filter, page.after_id()?.as_deref(), page.limit + 1).await?;
        let (runs, next_page_token) = page.finish(rows, |r| json!(r.id));
        ok(Ok(pb::ListRunsResponse { runs, next_page_token }))
    }

    async fn update_run(&self, request: Request<pb::UpdateRunRequest>) -> Result<Response<pb::Run>, Status> {
        let change = self.change(&request)?;
        self.ensure_own(&request, runs::KIND, &request.get_ref().id).await?;
        let r = request.into_inner();
        let update = RunUpdate {
            status: enum_filter("status", r.status)?,
            telemetry: r.telemetry,
            cost: r.cost,
            outputs: r.outputs,
            failure: r.failure,
            artifact_root_uri: None,
            note: (!r.note.is_empty()).then_some(r.note),
        };
        ok(runs::update(&self.state.db, &change, &r.id, update).await)
    }

    async fn create_artifact(
        &self,
        request: Request<pb::CreateArtifactRequest>,
    ) -> Result<Response<pb::Artifact>, Status> {
        let change = self.change(&request)?;
        let a = request.into_inner().artifact.ok_or_else(|| Error::invalid("artifact", "is required"))?;
        ok(artifacts::create(&self.state.db, &change, a).await)
    }

    async fn get_artifact(&self, request: Request<pb::GetObjectRequest>) -> Result<Response<pb::Artifact>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        ok(artifacts::get(&self.state.db, &id).await)
    }

    async fn list_artifacts(
        &self,
        request: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        let r = request.into_inner();
        let filter = artifacts::ArtifactFilter {
            run_id: id_filter("run_id", &r.run_id)?,
            issue_id: id_filter("issue_id", &r.issue_id)?,
            artifact_type: enum_filter("type", r.r#type)?,
        };
        let key = json!({ "run_id": r.run_id, "issue_id": r.issue_id, "type": r.r#type });
        let page = Page::new(r.page_size, &r.page_token, key)?;
        let rows = artifacts::list(&self.state.db, &filter, page.after_id()?.as_deref(), page.limit + 1).await?;
        let (artifacts, next_page_token) = page.finish(rows, |a| json!(a.id));
        ok(Ok(pb::ListArtifactsResponse { artifacts, next_page_token }))
    }

    async fn link_issue_doctrine_ref(
        &self,
        request: Request<pb::IssueLinkRequest>,
    ) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        self.ensure_own(&request, issues::KIND, &request.get_ref().issue_id).await?;
        let r = request.into_inner();
        ok(issues::set_link(&self.state.db, &change, Link::IssueDoctrineRef, &r.issue_id, &r.target_id, true).await)
    }

    async fn unlink_issue_doctrine_ref(
        &self,
        request: Request<pb::IssueLinkRequest>,
    ) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        self.ensure_own(&request, issues::KIND, &request.get_ref().issue_id).await?;
        let r = request.into_inner();
        ok(issues::set_link(&self.state.db, &change, Link::IssueDoctrineRef, &r.issue_id, &r.target_id, false).await)
    }

    async fn link_issue_constraint_snapshot(
        &self,
        request: Request<pb::IssueLinkRequest>,
    ) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        self.ensure_own(&request, issues::KIND, &request.get_ref().issue_id).await?;
        let r = request.into_inner();
        ok(issues::set_link(&self.state.db, &change, Link::IssueConstraintSnapshot, &r.issue_id, &r.target_id, true)
            .await)
    }

    async fn unlink_issue_constraint_snapshot(
        &self,
        request: Request<pb::IssueLinkRequest>,
    ) -> Result<Response<pb::Issue>, Status> {
        let change = self.change(&request)?;
        self.ensure_own(&request, issues::KIND, &request.get_ref().issue_id).await?;
        let r = request.into_inner();
        ok(issues::set_link(&self.state.db, &change, Link::IssueConstraintSnapshot, &r.issue_id, &r.target_id, false)
            .await)
    }
}
