//! Completions leave the worker in groups. A task that finishes while a call is on its way waits for that call to
//! return, then goes with every other task that finished meanwhile, in one CompleteTasks call. Nothing waits on
//! purpose: a lone completion goes at once, and under load the groups grow by themselves. Fewer, larger calls mean
//! fewer messages for both sides and larger group commits on the server.

use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use super::{Client, settle, with_trace_id};
use crate::pb::{self, complete_task_result::Outcome};

/// Most completions in one call (the server takes up to 1,000).
const MAX_GROUP: usize = 256;

struct Job {
    request: pb::CompleteTaskRequest,
    trace_id: String,
    reply: oneshot::Sender<Result<pb::Task, Status>>,
}

/// Hands completions to the session's sender; cheap to clone.
#[derive(Clone)]
pub struct Completer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Completer {
    /// Starts the sender; it ends once every `Completer` is dropped and the last group is answered.
    pub fn spawn(client: Client) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(client, rx));
        Self { jobs }
    }

    /// Records the result of a lease, retrying transient failures as every settle call does.
    pub async fn complete(&self, request: pb::CompleteTaskRequest, trace_id: &str) -> Result<pb::Task, Status> {
        let (reply, answer) = oneshot::channel();
        let job = Job { request, trace_id: trace_id.to_owned(), reply };
        self.jobs.send(job).map_err(|_| Status::unavailable("the worker's session has ended"))?;
        answer.await.unwrap_or_else(|_| Err(Status::unavailable("the worker's session has ended")))
    }
}

async fn send_loop(client: Client, mut jobs: mpsc::UnboundedReceiver<Job>) {
    // Set once a server answers that it has no CompleteTasks: every completion then goes alone.
    let mut one_by_one = false;
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if group.len() > 1 && !one_by_one {
            match complete_group(&client, &mut group).await {
                Ok(()) => continue,
                Err(status) if status.code() == Code::Unimplemented => {
                    tracing::info!("the server has no CompleteTasks; completing tasks one by one");
                    one_by_one = true;
                }
                Err(status) => {
                    for job in group {
                        let _ = job.reply.send(Err(status.clone()));
                    }
                    continue;
                }
            }
        }
        // Alone: the call carries the task's trace id. Each waits for the one before, so that what finishes
        // meanwhile forms the next group.
        for job in group {
            let answer = settle(|| {
                let mut client = client.clone();
                let request = with_trace_id(job.request.clone(), &job.trace_id);
                async move { client.complete_task(request).await }
            })
            .await;
            let _ = job.reply.send(answer);
        }
    }
}

/// One CompleteTasks call for the group, retried while it fails as a whole; each job gets its own answer. An error
/// means no job was answered.
async fn complete_group(client: &Client, group: &mut Vec<Job>) -> Result<(), Status> {
    let request = pb::CompleteTasksRequest { requests: group.iter().map(|job| job.request.clone()).collect() };
    let response = settle(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.complete_tasks(request).await }
    })
    .await?;
    let mut results = response.results.into_iter();
    for job in group.drain(..) {
        let answer = match results.next().and_then(|r| r.outcome) {
            Some(Outcome::Task(task)) => Ok(task),
            Some(Outcome::Error(error)) => Err(Status::new(Code::from(error.code), error.message)),
            None => Err(Status::internal("the server sent fewer results than completions")),
        };
        let _ = job.reply.send(answer);
    }
    Ok(())
}
