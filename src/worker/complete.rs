//! Completions leave the worker in groups. A task that finishes while the calls on their way are as many as may be
//! waits for one of them to return, then goes with every other task that finished meanwhile, in one CompleteTasks
//! call. Nothing waits on
//! purpose: a lone completion goes at once, and under load the groups grow by themselves. Fewer, larger calls mean
//! fewer messages for both sides and larger group commits on the server.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::{Code, Status};

use super::{Client, settle, transient, with_trace_id};
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

/// CompleteTasks calls on their way at once. A second call lets the server commit one group while the next one is
/// on the wire, so that a worker with many tasks in flight keeps both sides busy; what finishes while both are out
/// waits and forms the next group.
const CALLS_IN_FLIGHT: usize = 2;

async fn send_loop(client: Client, mut jobs: mpsc::UnboundedReceiver<Job>) {
    // Set once a server answers that it has no CompleteTasks: every completion then goes alone.
    let one_by_one = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    while let Some(first) = jobs.recv().await {
        let Ok(permit) = calls.clone().acquire_owned().await else { return };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (client, one_by_one) = (client.clone(), one_by_one.clone());
        tokio::spawn(async move {
            send_group(&client, group, &one_by_one).await;
            drop(permit);
        });
    }
    // Every call has returned once all permits are back.
    let _ = calls.acquire_many(CALLS_IN_FLIGHT as u32).await;
}

/// One group: a CompleteTasks call, or the calls one by one where the server has none. Items the call answered
/// with a transient error (a database error on the server's side, say) go again alone, with the retries of every
/// settle call: left unsettled, their leases would expire and the tasks run a second time.
async fn send_group(client: &Client, mut group: Vec<Job>, one_by_one: &AtomicBool) {
    if group.len() > 1 && !one_by_one.load(Ordering::Relaxed) {
        match complete_group(client, &mut group).await {
            Ok(()) => {}
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("the server has no CompleteTasks; completing tasks one by one");
                one_by_one.store(true, Ordering::Relaxed);
            }
            Err(status) => {
                for job in group {
                    let _ = job.reply.send(Err(status.clone()));
                }
                return;
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

/// One CompleteTasks call for the group, retried while it fails as a whole; each job gets its own answer, except
/// those answered with a transient error (or not at all), which stay in `group`. An error means no job was
/// answered.
async fn complete_group(client: &Client, group: &mut Vec<Job>) -> Result<(), Status> {
    // The worker needs each task's outcome only, not its spec and result back.
    let request = pb::CompleteTasksRequest {
        requests: group.iter().map(|job| job.request.clone()).collect(),
        view: pb::TaskView::Basic.into(),
    };
    let response = settle(|| {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.complete_tasks(request).await }
    })
    .await?;
    let mut results = response.results.into_iter();
    let mut again = Vec::new();
    for job in group.drain(..) {
        let answer = match results.next().and_then(|r| r.outcome) {
            Some(Outcome::Task(task)) => Ok(task),
            Some(Outcome::Error(error)) => Err(Status::new(Code::from(error.code), error.message)),
            None => Err(Status::internal("the server sent fewer results than completions")),
        };
        match answer {
            Err(status) if transient(&status) => {
                tracing::warn!(lease_id = %job.request.lease_id, %status, "completing failed; retrying alone");
                again.push(job);
            }
            answer => {
                let _ = job.reply.send(answer);
            }
        }
    }
    *group = again;
    Ok(())
}
