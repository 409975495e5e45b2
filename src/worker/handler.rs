//! What a worker runs per task: the [`Handler`] trait, the context it gets, and the built-in `echo` handler.

use std::{future::Future, pin::Pin};

use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{json::struct_to_json, pb};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a handler ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(Json),
    Failed {
        error: String,
        retryable: bool,
    },
    /// Stopped because the lease was withdrawn (task cancelled, lease lost) or the worker is shutting down.
    Cancelled,
}

/// Lines written here stream into the task's `log.txt` while the handler runs.
#[derive(Debug, Clone)]
pub struct LogSink(mpsc::UnboundedSender<Vec<u8>>);

impl LogSink {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    pub fn line(&self, line: impl AsRef<str>) {
        let mut bytes = Vec::with_capacity(line.as_ref().len() + 1);
        bytes.extend_from_slice(line.as_ref().as_bytes());
        bytes.push(b'\n');
        // The uploader has gone only if the task is over; a late line has nowhere to go.
        let _ = self.0.send(bytes);
    }
}

pub struct TaskContext {
    pub log: LogSink,
    /// Cancelled when the handler must stop.
    pub cancelled: CancellationToken,
    pub worker_id: String,
}

/// Runs tasks. The `control-tower worker` daemon drives its handlers on a single thread, so a handler awaits
/// rather than blocks: work that computes or blocks goes to `tokio::task::spawn_blocking`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, task: pb::Task, ctx: TaskContext) -> BoxFuture<'static, Outcome>;
}

/// Completes every task with its inputs as the result, logging a few lines on the way.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoHandler;

impl Handler for EchoHandler {
    fn handle(&self, task: pb::Task, ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let spec = task.spec.unwrap_or_default();
            let target = spec.target.unwrap_or_default();
            ctx.log.line(format!("echo: task {} ({}) on {}@{}", task.id, spec.operation, target.repo, target.r#ref));
            ctx.log.line(format!("echo: objective: {}", spec.objective));
            let inputs = spec.inputs.map_or_else(|| serde_json::json!({}), struct_to_json);
            let fields = inputs.as_object().map_or(0, |o| o.len());
            ctx.log.line(format!("echo: returning {fields} input field(s) as the result"));
            Outcome::Completed(inputs)
        })
    }
}

/// Completes every task at once, logging nothing; the result records when the handler started (microseconds since
/// the epoch), so that benchmarks can measure dispatch latency.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopHandler;

impl Handler for NoopHandler {
    fn handle(&self, _task: pb::Task, _ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        let started = crate::clock::Clock::now(&crate::clock::SystemClock);
        Box::pin(async move { Outcome::Completed(serde_json::json!({ "handler_started_us": started })) })
    }
}
