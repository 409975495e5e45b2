//! `control-tower task enqueue|get|list|watch|cancel`.

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value as Json;

use super::{ClientArgs, Output, read_json, render, short_enum};
use crate::pb;

/// Tasks per EnqueueTasks call when a file holds many.
const BATCH: usize = 500;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Enqueue the TaskSpec in a JSON file (`-` for stdin); a JSON array enqueues each, in batches.
    Enqueue {
        #[arg(long, short = 'f', default_value = "-")]
        file: String,
        /// Trace id for the task, its audit entries and trace folder (one is made when absent).
        #[arg(long)]
        trace_id: Option<String>,
        /// Also create the task's work model (Issue, ContextPacket, ConstraintSnapshot).
        #[arg(long)]
        create_cwom: bool,
    },
    /// Show one task.
    Get { id: String },
    /// List tasks, newest first.
    List {
        #[command(flatten)]
        filter: TaskFilterArgs,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Follow task transitions live until interrupted.
    Watch {
        #[command(flatten)]
        filter: TaskFilterArgs,
        /// Resume after this event's cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Cancel a queued or running task.
    Cancel {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl From<StatusArg> for pb::TaskStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Queued => Self::Queued,
            StatusArg::Running => Self::Running,
            StatusArg::Completed => Self::Completed,
            StatusArg::Failed => Self::Failed,
            StatusArg::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TaskFilterArgs {
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    #[arg(long)]
    operation: Option<String>,
    #[arg(long)]
    requested_by_kind: Option<String>,
    /// Target repository, e.g. acme/app.
    #[arg(long)]
    repo: Option<String>,
    #[arg(long)]
    worker: Option<String>,
}

impl TaskFilterArgs {
    fn status(&self) -> i32 {
        self.status.map_or(pb::TaskStatus::Unspecified, pb::TaskStatus::from) as i32
    }
}

pub async fn run(client: &ClientArgs, command: TaskCommand) -> anyhow::Result<i32> {
    let tower = client.connect().await?;
    let output = client.output;
    match command {
        TaskCommand::Enqueue { file, trace_id, create_cwom } => {
            let document = read_json(&file)?;
            let trace_id = trace_id.as_deref();
            match document {
                Json::Array(items) => enqueue_many(&tower, items, trace_id, create_cwom, output).await,
                spec => {
                    let spec: pb::TaskSpec =
                        serde_json::from_value(spec).map_err(|e| anyhow::anyhow!("{file} is not a TaskSpec: {e}"))?;
                    let request = pb::EnqueueTaskRequest { spec: Some(spec), create_cwom };
                    let enqueued = tower.enqueue_request(request, trace_id).await?;
                    match output {
                        Output::Json => render::json(&enqueued)?,
                        Output::Table => print_tasks(enqueued.task.as_slice()),
                    }
                    Ok(0)
                }
            }
        }
        TaskCommand::Get { id } => {
            let task = tower.get(&id).await?;
            match output {
                Output::Json => render::json(&task)?,
                Output::Table => render::record(&flatten_task(&task)),
            }
            Ok(0)
        }
        TaskCommand::List { filter, limit } => {
            let mut tasks = Vec::new();
            let mut page_token = String::new();
            while tasks.len() < limit {
                let request = pb::ListTasksRequest {
                    status: filter.status(),
                    operation: filter.operation.clone().unwrap_or_default(),
                    requested_by_kind: filter.requested_by_kind.clone().unwrap_or_default(),
                    target_repo: filter.repo.clone().unwrap_or_default(),
                    worker_id: filter.worker.clone().unwrap_or_default(),
                    page_size: (limit - tasks.len()).min(1000) as i32,
                    page_token,
                };
                let page = tower.list(request).await?;
                tasks.extend(page.tasks);
                page_token = page.next_page_token;
                if page_token.is_empty() {
                    break;
                }
            }
            tasks.truncate(limit);
            match output {
                Output::Json => render::json(&tasks)?,
                Output::Table => print_tasks(&tasks),
            }
            Ok(0)
        }
        TaskCommand::Watch { filter, cursor } => {
            let request = pb::WatchTasksRequest {
                status: filter.status(),
                operation: filter.operation.unwrap_or_default(),
                requested_by_kind: filter.requested_by_kind.unwrap_or_default(),
                target_repo: filter.repo.unwrap_or_default(),
                worker_id: filter.worker.unwrap_or_default(),
                cursor: cursor.unwrap_or_default(),
            };
            let mut events = tower.watch(request).await?;
            if output == Output::Table {
                println!("{:<27}  {:<36}  {:<22}  NOTE", "AT", "TASK", "TRANSITION");
            }
            loop {
                let event = tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(0),
                    event = events.message() => event?,
                };
                let Some(event) = event else { return Ok(0) };
                match output {
                    Output::Json => render::json_line(&event)?,
                    Output::Table => print_event(&event)?,
                }
                std::io::stdout().flush()?;
            }
        }
        TaskCommand::Cancel { id, reason } => {
            let task = tower.cancel(&id, &reason).await?;
            match output {
                Output::Json => render::json(&task)?,
                Output::Table => print_tasks(std::slice::from_ref(&task)),
            }
            Ok(0)
        }
    }
}

async fn enqueue_many(
    tower: &crate::client::ControlTower,
    items: Vec<Json>,
    trace_id: Option<&str>,
    create_cwom: bool,
    output: Output,
) -> anyhow::Result<i32> {
    let mut requests = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let spec: pb::TaskSpec =
            serde_json::from_value(item).map_err(|e| anyhow::anyhow!("item {i} is not a TaskSpec: {e}"))?;
        requests.push(pb::EnqueueTaskRequest { spec: Some(spec), create_cwom });
    }
    let total = requests.len();
    let mut results = Vec::with_capacity(total);
    for batch in requests.chunks(BATCH) {
        let response = tower.enqueue_many(batch.to_vec(), trace_id).await?;
        results.extend(response.results);
        eprintln!("enqueued {}/{total}", results.len());
    }
    let refused =
        results.iter().filter(|r| matches!(r.outcome, Some(pb::enqueue_task_result::Outcome::Error(_)))).count();
    match output {
        Output::Json => render::json(&results)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .enumerate()
                .map(|(i, result)| match &result.outcome {
                    Some(pb::enqueue_task_result::Outcome::Enqueued(e)) => {
                        let id = e.task.as_ref().map(|t| t.id.clone()).unwrap_or_default();
                        vec![i.to_string(), id, if e.created { "created" } else { "existing" }.into(), String::new()]
                    }
                    Some(pb::enqueue_task_result::Outcome::Error(error)) => {
                        vec![i.to_string(), String::new(), "refused".into(), describe_item(error)]
                    }
                    None => vec![i.to_string(), String::new(), "unknown".into(), String::new()],
                })
                .collect();
            render::table(&["ITEM", "TASK", "OUTCOME", "ERROR"], &rows);
        }
    }
    if refused > 0 {
        eprintln!("{refused} of {total} refused");
        return Ok(3);
    }
    Ok(0)
}

fn describe_item(error: &pb::ItemError) -> String {
    let mut text = error.message.clone();
    if !error.reason.is_empty() {
        text.push_str(&format!(" (reason {})", error.reason));
    }
    text
}

/// A task as one flat record: its own fields, then its spec's, for `task get`.
fn flatten_task(task: &pb::Task) -> Json {
    let mut flat = serde_json::to_value(task).unwrap_or(Json::Null);
    if let Some(object) = flat.as_object_mut() {
        let spec = object.remove("spec");
        if let Some(status) = object.get("status") {
            let status = short_enum(status, "TASK_STATUS_");
            object.insert("status".into(), Json::String(status));
        }
        if let Some(Json::Object(spec)) = spec {
            for (key, value) in spec {
                object.insert(format!("spec.{key}"), value);
            }
        }
    }
    flat
}

fn print_tasks(tasks: &[pb::Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let spec = t.spec.clone().unwrap_or_default();
            let status = serde_json::to_value(pb::TaskStatus::try_from(t.status).unwrap_or_default())
                .map(|s| short_enum(&s, "TASK_STATUS_"))
                .unwrap_or_default();
            vec![
                t.id.clone(),
                status,
                spec.operation,
                t.attempt.to_string(),
                t.worker_id.clone(),
                render::cell(&Json::String(spec.objective)),
            ]
        })
        .collect();
    render::table(&["ID", "STATUS", "OPERATION", "ATTEMPT", "WORKER", "OBJECTIVE"], &rows);
}

fn print_event(event: &pb::TaskEvent) -> anyhow::Result<()> {
    let json = serde_json::to_value(event)?;
    let at = render::cell(json.get("at").unwrap_or(&Json::Null));
    let task = event.task.as_ref().map(|t| t.id.clone()).unwrap_or_default();
    let from = short_enum(json.get("from_status").unwrap_or(&Json::Null), "TASK_STATUS_");
    let to = short_enum(json.get("to_status").unwrap_or(&Json::Null), "TASK_STATUS_");
    let transition = if from.is_empty() || from == "unspecified" { to } else { format!("{from} -> {to}") };
    println!("{at:<27}  {task:<36}  {transition:<22}  {}", event.note);
    Ok(())
}
