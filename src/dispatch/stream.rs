//! One PullTasks stream: claim as many tasks as the stream has free slots, push them, wait for a reason to claim
//! again (new work, a freed slot, a phase change), and give back every held lease when the stream ends.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{Dispatcher, Outbox, Phase, StreamEntry};
use crate::{
    convert::{input_json, timestamp},
    error::{Error, Result},
    pb::{self, pull_tasks_response::Event},
    store::tasks::{self, ClaimRequest, LeaseLoss},
};
use crate::{limits::StreamPermit, metrics};

/// Most tasks one stream may hold at once (`PullTasksRequest.max_in_flight`).
pub const MAX_IN_FLIGHT: usize = 1000;

#[derive(Debug)]
pub struct PullOptions {
    pub worker_id: String,
    /// Empty means every operation.
    pub operations: Vec<String>,
    pub max_in_flight: usize,
    /// Counts the stream against its caller's stream limit until the stream ends.
    pub permit: StreamPermit,
}

/// Room in a stream's buffer beyond its assignments, for control messages.
const CONTROL_BUFFER: usize = 16;

pub type TaskStream = ReceiverStream<Result<pb::PullTasksResponse, Status>>;

/// Opens a stream for a worker; refused while the server shuts down.
pub fn open_stream(dispatcher: &Arc<Dispatcher>, options: PullOptions) -> Result<TaskStream> {
    if dispatcher.phase() != Phase::Serving {
        return Err(Error::Unavailable("the server is shutting down; connect to another server".into()));
    }
    let (outbox, inbox) = mpsc::channel(options.max_in_flight + CONTROL_BUFFER);
    let entry = dispatcher.register_stream(&options.worker_id, outbox.clone());
    tracing::info!(worker_id = %options.worker_id, max_in_flight = options.max_in_flight, "worker stream opened");
    tokio::spawn(run(dispatcher.clone(), entry, outbox, options));
    Ok(ReceiverStream::new(inbox))
}

enum Pushed {
    /// This many tasks were pushed; `more` when eligible tasks were held back by a concurrency key that filled up
    /// (others may be waiting behind them, so look again at once).
    Sent { count: usize, more: bool },
    /// The worker went away while we pushed.
    WorkerGone,
}

async fn run(dispatcher: Arc<Dispatcher>, entry: Arc<StreamEntry>, outbox: Outbox, options: PullOptions) {
    let mut work = dispatcher.work.subscribe();
    let mut phase = dispatcher.phase.subscribe();
    let mut drain_announced = false;
    let mut error_delay = Duration::from_millis(50);
    // An enqueue claimed for this stream and left nothing claimable behind: park again without looking.
    let mut queue_seen_empty = false;

    loop {
        let current = *phase.borrow_and_update();
        if current == Phase::Closed {
            break;
        }
        if current == Phase::Draining && !drain_announced {
            drain_announced = true;
            let draining = pb::ServerDraining { reason: "the server is shutting down".into() };
            let _ = outbox.try_send(Ok(pb::PullTasksResponse { event: Some(Event::Draining(draining)) }));
        }
        let accepting = current == Phase::Serving && !entry.worker_draining.load(std::sync::atomic::Ordering::SeqCst);
        let free = options.max_in_flight.saturating_sub(entry.held_count());
        let wants_work = accepting && free > 0;
        if wants_work && !std::mem::take(&mut queue_seen_empty) {
            // Mark the current work signal seen before looking, so that work arriving during the claim wakes us.
            work.borrow_and_update();
            match claim_and_push(&dispatcher, &entry, &outbox, &options, free).await {
                Ok(Pushed::Sent { count, more }) if count == free || more => continue,
                Ok(Pushed::Sent { .. }) => error_delay = Duration::from_millis(50),
                Ok(Pushed::WorkerGone) => break,
                Err(err) => {
                    tracing::warn!(worker_id = %options.worker_id, error = %err, "claim failed; retrying");
                    tokio::select! {
                        _ = outbox.closed() => break,
                        _ = tokio::time::sleep(error_delay) => {}
                    }
                    error_delay = (error_delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        // Nothing more to claim for now: sleep, parked where an enqueue can claim for this stream, or when every slot
        // is taken, where the completions that free them can (see `handoff`).
        let parking = if wants_work { &dispatcher.parked } else { &dispatcher.full };
        let full = accepting && free == 0 && dispatcher.refills_by_completions();
        let mut ticket =
            (wants_work || full).then(|| parking.park(entry.clone(), claim_request(&dispatcher, &options, free)));
        let mut handed = None;
        let mut answered = false;
        let mut closed = false;
        tokio::select! {
            _ = outbox.closed() => closed = true,
            _ = work.changed(), if wants_work => {}
            _ = entry.slot_freed.notified() => {}
            _ = phase.changed() => {}
            answer = async { ticket.as_mut().expect("guarded by is_some").answer().await }, if ticket.is_some() => {
                handed = answer;
                answered = true;
            }
        }
        if let Some(ticket) = ticket.take().filter(|_| !answered) {
            handed = parking.leave(ticket).await;
        }
        if let Some(claimed) = handed {
            // Pushed even when the worker has gone: the leases are then held, and released below with the rest.
            match push(&dispatcher, &entry, &outbox, &options, claimed).await {
                Pushed::WorkerGone => break,
                // Work signalled since this stream last looked still wakes it.
                Pushed::Sent { count, more } => queue_seen_empty = count < free && !more,
            }
        }
        if closed {
            break;
        }
    }

    let held = dispatcher.release_held(&entry);
    tracing::info!(worker_id = %options.worker_id, released = held.len(), "worker stream closed");
    if !held.is_empty() {
        let now = dispatcher.clock.now();
        match tasks::take_back_leases(&dispatcher.db, now, LeaseLoss::StreamClosed, &held).await {
            Ok(changed) => dispatcher.taken_back(&changed, now).await,
            // The reaper takes these back at their deadline.
            Err(err) => {
                tracing::error!(error = %err, leases = held.len(), "could not release the leases of a closed stream")
            }
        }
    }
    dispatcher.forget_stream(&entry);
    dispatcher.lease_released.notify_waiters();
}

async fn claim_and_push(
    dispatcher: &Dispatcher,
    entry: &Arc<StreamEntry>,
    outbox: &Outbox,
    options: &PullOptions,
    free: usize,
) -> Result<Pushed> {
    let claimed = dispatcher.claims.claim(claim_request(dispatcher, options, free)).await?;
    Ok(push(dispatcher, entry, outbox, options, claimed).await)
}

/// A claim of up to `free` tasks for the stream.
fn claim_request(dispatcher: &Dispatcher, options: &PullOptions, free: usize) -> ClaimRequest {
    ClaimRequest {
        worker_id: options.worker_id.clone(),
        operations: options.operations.clone(),
        limit: free as u64,
        lease_timeout: dispatcher.lease_timeout_micros(),
        trace_uri_prefix: dispatcher.traces.uri_prefix(),
        concurrency_limit: dispatcher.config.concurrency_limit,
    }
}

/// Holds the claimed leases, prepares their trace folders and sends the assignments.
async fn push(
    dispatcher: &Dispatcher,
    entry: &Arc<StreamEntry>,
    outbox: &Outbox,
    options: &PullOptions,
    claimed: tasks::Claimed,
) -> Pushed {
    let tasks::Claimed { tasks: claimed, capped } = claimed;
    // Hold every lease before pushing any, so that whatever happens next they are released with the stream. A
    // lease whose task was cancelled in the meantime is not pushed at all.
    let claimed: Vec<_> =
        claimed.into_iter().filter(|row| row.lease_id.as_deref().is_some_and(|l| dispatcher.hold(entry, l))).collect();
    let lease_timeout = pbjson_types::Duration::from(dispatcher.config.lease_timeout);
    let tasks: Vec<pb::Task> = claimed.iter().map(pb::Task::from).collect();
    let attempts = claimed.iter().filter_map(|row| match input_json(row) {
        Ok(input) => Some((row.id.clone(), row.attempt, input)),
        Err(err) => {
            tracing::error!(task_id = %row.id, error = %err, "could not write input.json");
            None
        }
    });
    let mut folders = dispatcher.traces.begin_attempts(attempts.collect());
    folders.prepare_retries().await;
    let mut worker_gone = false;
    for (row, task) in claimed.iter().zip(tasks) {
        let lease_id = row.lease_id.clone().unwrap_or_default();
        if !entry.holds(&lease_id) {
            // Withdrawn (cancelled, expired) while we were pushing the ones before it.
            continue;
        }
        let assignment = pb::TaskAssignment {
            task: Some(task),
            lease_id,
            lease_deadline: row.lease_expires_at.map(timestamp),
            attempt: row.attempt,
            lease_timeout: Some(lease_timeout),
        };
        tracing::debug!(task_id = %row.id, worker_id = %options.worker_id, attempt = row.attempt, "task leased");
        let message = pb::PullTasksResponse { event: Some(Event::Assignment(assignment)) };
        if outbox.send(Ok(message)).await.is_err() {
            worker_gone = true;
            break;
        }
        let due = row.queued_at.max(row.run_after);
        let waited = dispatcher.clock.now().saturating_sub(due).max(0);
        metrics::global().dispatch_latency.observe(waited as f64 / 1e6);
    }
    folders.prepare_firsts().await;
    if worker_gone {
        return Pushed::WorkerGone;
    }
    Pushed::Sent { count: claimed.len(), more: capped > 0 }
}
