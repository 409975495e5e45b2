//! `control-tower cwom <object> get|list|create`. Requests are built from JSON (the proto JSON mapping), so every
//! field and filter of the protos is reachable without a flag per field.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value as Json};

use super::{ClientArgs, Output, read_json, render};
use crate::pb;

#[derive(Debug, Args)]
pub struct CwomArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Which kind of object.
    #[arg(value_enum)]
    pub object: CwomObject,
    #[command(subcommand)]
    pub command: CwomCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CwomObject {
    Repo,
    Issue,
    ContextPacket,
    ConstraintSnapshot,
    DoctrineRef,
    Run,
    Artifact,
}

impl CwomObject {
    /// The field that carries the object in its Create request, e.g. `context_packet`.
    fn field(self) -> &'static str {
        match self {
            Self::Repo => "repo",
            Self::Issue => "issue",
            Self::ContextPacket => "context_packet",
            Self::ConstraintSnapshot => "constraint_snapshot",
            Self::DoctrineRef => "doctrine_ref",
            Self::Run => "run",
            Self::Artifact => "artifact",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CwomCommand {
    /// Show one object.
    Get { id: String },
    /// List objects; filters are the List request's fields, e.g. `--where status=running --where repo_id=...`.
    List {
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        filters: Vec<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Create the object in a JSON file (`-` for stdin).
    Create {
        #[arg(long, short = 'f', default_value = "-")]
        file: String,
    },
}

/// Calls one RPC of the CwomService for the object kind, with a request decoded from JSON; the response as JSON.
macro_rules! cwom_call {
    ($object:expr, $client:expr, $action:ident, $request:expr) => {
        match $object {
            CwomObject::Repo => cwom_call!(@one $client, $action, $request, create_repo, get_repo, list_repos,
                CreateRepoRequest, ListReposRequest),
            CwomObject::Issue => cwom_call!(@one $client, $action, $request, create_issue, get_issue, list_issues,
                CreateIssueRequest, ListIssuesRequest),
            CwomObject::ContextPacket => cwom_call!(@one $client, $action, $request, create_context_packet,
                get_context_packet, list_context_packets, CreateContextPacketRequest, ListContextPacketsRequest),
            CwomObject::ConstraintSnapshot => cwom_call!(@one $client, $action, $request,
                create_constraint_snapshot, get_constraint_snapshot, list_constraint_snapshots,
                CreateConstraintSnapshotRequest, ListConstraintSnapshotsRequest),
            CwomObject::DoctrineRef => cwom_call!(@one $client, $action, $request, create_doctrine_ref,
                get_doctrine_ref, list_doctrine_refs, CreateDoctrineRefRequest, ListDoctrineRefsRequest),
            CwomObject::Run => cwom_call!(@one $client, $action, $request, create_run, get_run, list_runs,
                CreateRunRequest, ListRunsRequest),
            CwomObject::Artifact => cwom_call!(@one $client, $action, $request, create_artifact, get_artifact,
                list_artifacts, CreateArtifactRequest, ListArtifactsRequest),
        }
    };
    (@one $client:expr, create, $request:expr, $create:ident, $get:ident, $list:ident, $Create:ident, $List:ident) => {{
        let request: pb::$Create = decode($request)?;
        serde_json::to_value($client.$create(request).await?.into_inner())?
    }};
    (@one $client:expr, get, $request:expr, $create:ident, $get:ident, $list:ident, $Create:ident, $List:ident) => {{
        let request: pb::GetObjectRequest = decode($request)?;
        serde_json::to_value($client.$get(request).await?.into_inner())?
    }};
    (@one $client:expr, list, $request:expr, $create:ident, $get:ident, $list:ident, $Create:ident, $List:ident) => {{
        let request: pb::$List = decode($request)?;
        serde_json::to_value($client.$list(request).await?.into_inner())?
    }};
}

fn decode<T: serde::de::DeserializeOwned>(request: Json) -> anyhow::Result<T> {
    serde_json::from_value(request).map_err(|e| anyhow::anyhow!("invalid request: {e}"))
}

pub async fn run(args: CwomArgs) -> anyhow::Result<i32> {
    let tower = args.client.connect().await?;
    let mut cwom = tower.cwom();
    let object = args.object;
    match args.command {
        CwomCommand::Get { id } => {
            let found = cwom_call!(object, cwom, get, serde_json::json!({ "id": id }));
            match args.client.output {
                Output::Json => render::json(&found)?,
                Output::Table => render::record(&found),
            }
        }
        CwomCommand::Create { file } => {
            let document = read_json(&file)?;
            let created = cwom_call!(object, cwom, create, serde_json::json!({ object.field(): document }));
            match args.client.output {
                Output::Json => render::json(&created)?,
                Output::Table => render::record(&created),
            }
        }
        CwomCommand::List { filters, limit } => {
            let mut request = Map::new();
            for filter in &filters {
                let (field, value) = filter
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--where {filter:?}: expected FIELD=VALUE"))?;
                request.insert(field.to_owned(), Json::String(value.to_owned()));
            }
            let mut found: Vec<Json> = Vec::new();
            loop {
                request.insert("page_size".into(), Json::from((limit - found.len()).min(1000)));
                let page = cwom_call!(object, cwom, list, Json::Object(request.clone()));
                // A List response holds one repeated field of objects and the next page token.
                let objects = page.as_object().and_then(|p| p.values().find_map(Json::as_array)).cloned();
                found.extend(objects.unwrap_or_default());
                let token = page.get("next_page_token").and_then(Json::as_str).unwrap_or_default().to_owned();
                if token.is_empty() || found.len() >= limit {
                    break;
                }
                request.insert("page_token".into(), Json::String(token));
            }
            found.truncate(limit);
            match args.client.output {
                Output::Json => render::json(&found)?,
                Output::Table => render::objects(&found, 6),
            }
        }
    }
    Ok(0)
}
