//! Dispatch: pushing leased tasks to worker streams, tracking which stream holds which lease, and taking leases
//! back when streams drop or deadlines pass.
//!
//! Wake-ups are pushed, not polled: every change that may make work claimable (enqueue, requeue, a freed slot)
//! bumps a `watch` counter that idle streams wait on, and retries scheduled for later get a timer of their own.
//! A periodic sweep (the lease reaper) is the safety net.

mod claimer;
mod group_commit;
mod handoff;
mod intake;
mod maintenance;
mod notify;
mod settler;
mod stream;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, mpsc, watch};
use tonic::Status;

use sea_orm::TransactionTrait;

use crate::metrics::ReasonLabels;
use crate::{
    clock::{Micros, SharedClock, duration_micros},
    convert::output_json,
    pb,
    spec::NewTask,
    store::tasks::{self, Backoff, Claimed, EnqueueContext, LeaseLoss},
    store::{
        audit::Actor,
        cwom::{
            Change,
            task_model::{self, TraceFile},
        },
        entity::task::{Model as TaskRow, TaskStatus},
    },
    trace::TraceStore,
};

pub use handoff::Parked;
pub use intake::Intake;
pub use maintenance::spawn_maintenance;
pub use notify::spawn_listener;
pub use settler::Completions;
pub use stream::{MAX_IN_FLIGHT, PullOptions, TaskStream, open_stream};

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long a lease lasts without a heartbeat.
    pub lease_timeout: Duration,
    /// How often expired leases are reaped and idle streams re-check the queue.
    pub sweep_interval: Duration,
    /// Retry schedule of retryable failures.
    pub backoff: Backoff,
    /// How many tasks with the same concurrency key may run at once, across all servers.
    pub concurrency_limit: u32,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            lease_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            backoff: Backoff { base: 1_000_000, max: 300_000_000 },
            concurrency_limit: 1,
        }
    }
}

/// Where the server is in its life; streams grant leases only while `Serving`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Shutting down: no new leases; held leases may still be settled.
    Draining,
    /// Streams end and release what they still hold.
    Closed,
}

type Outbox = mpsc::Sender<Result<pb::PullTasksResponse, Status>>;

/// What the dispatcher knows of one open PullTasks stream.
struct StreamEntry {
    id: u64,
    worker_id: String,
    held: Mutex<HashSet<String>>,
    /// A lease of this stream ended: it may claim again.
    slot_freed: Notify,
    /// The worker said it is shutting down: grant it nothing new.
    worker_draining: AtomicBool,
    outbox: Outbox,
}

impl StreamEntry {
    fn held_count(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    fn holds(&self, lease_id: &str) -> bool {
        self.held.lock().map(|h| h.contains(lease_id)).unwrap_or(false)
    }
}

pub struct Dispatcher {
    db: DatabaseConnection,
    /// Where claims run (see `store::db::connect_claims`).
    claim_db: DatabaseConnection,
    claims: claimer::Claims,
    /// Streams waiting for work, which an enqueue may claim for.
    parked: handoff::ParkedStreams,
    /// Streams whose slots are all taken, which the completions that free them may claim for.
    full: handoff::ParkedStreams,
    clock: SharedClock,
    traces: TraceStore,
    config: DispatchConfig,
    /// Bumped whenever claimable work may have appeared.
    work: watch::Sender<u64>,
    phase: watch::Sender<Phase>,
    streams: Mutex<HashMap<u64, Arc<StreamEntry>>>,
    /// Which stream holds each lease granted by this server.
    leases: Mutex<HashMap<String, Arc<StreamEntry>>>,
    next_stream_id: AtomicU64,
    /// Times at which delayed tasks become claimable (retries after backoff, run_after).
    wakeups: Mutex<BinaryHeap<Reverse<Micros>>>,
    wakeup_added: Notify,
    /// Signalled whenever a lease is released, so that a drain can wait for the last one.
    lease_released: Notify,
    /// Leases withdrawn (task cancelled) before their stream registered them: never pushed to a worker.
    withdrawn_early: Mutex<HashSet<String>>,
    /// Names this server in the signals it sends to the others.
    server_id: String,
    /// A "work" signal is on its way to the other servers; more work meanwhile needs no signal of its own.
    work_signal_pending: Arc<AtomicBool>,
    /// Whether this server hears the other servers' signals (PostgreSQL only).
    listening: AtomicBool,
}

/// Adds to `group` whatever is already waiting in `jobs`, up to `max` in all, without waiting for more: the
/// group commits of claims, enqueues and completions take what arrived during the previous commit.
fn take_waiting<T>(jobs: &mut mpsc::Receiver<T>, group: &mut Vec<T>, max: usize) {
    while group.len() < max {
        match jobs.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// Bound on pending wake-up timers.
const MAX_WAKEUPS: usize = 100_000;
/// Bound on remembered early withdrawals; they are consumed within one claim, so this only guards against leaks.
const MAX_WITHDRAWN_EARLY: usize = 10_000;

impl Dispatcher {
    /// `claim_db` is where claims run (see `store::db::connect_claims`).
    pub fn new(
        db: DatabaseConnection,
        claim_db: DatabaseConnection,
        clock: SharedClock,
        traces: TraceStore,
        config: DispatchConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            claims: claimer::Claims::spawn(claim_db.clone(), clock.clone()),
            claim_db,
            parked: handoff::ParkedStreams::default(),
            full: handoff::ParkedStreams::default(),
            db,
            clock,
            traces,
            config,
            work: watch::Sender::new(0),
            phase: watch::Sender::new(Phase::Serving),
            streams: Mutex::default(),
            leases: Mutex::default(),
            next_stream_id: AtomicU64::new(1),
            wakeups: Mutex::default(),
            wakeup_added: Notify::new(),
            lease_released: Notify::new(),
            withdrawn_early: Mutex::default(),
            server_id: uuid::Uuid::new_v4().simple().to_string(),
            work_signal_pending: Arc::new(AtomicBool::new(false)),
            listening: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    pub fn lease_timeout_micros(&self) -> Micros {
        duration_micros(self.config.lease_timeout)
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Claimable work may exist now (or at `at`, if that is later), here and on the other servers.
    pub fn work_available(&self, at: Micros) {
        self.wake(at);
        if !self.work_signal_pending.swap(true, Ordering::SeqCst) {
            self.publish(notify::Signal::Work(at));
        }
    }

    /// Wakes this server's idle streams now, or sets a timer for `at`.
    fn wake(&self, at: Micros) {
        if at > self.clock.now() {
            if let Ok(mut wakeups) = self.wakeups.lock() {
                // The sweep finds scheduled tasks again, so a bounded timer set loses nothing.
                if wakeups.len() < MAX_WAKEUPS {
                    wakeups.push(Reverse(at));
                }
            }
            self.wakeup_added.notify_one();
        } else {
            self.work.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Where claims run; an enqueue that claims for parked streams runs there too.
    pub fn claim_db(&self) -> &DatabaseConnection {
        &self.claim_db
    }

    /// Takes the parked streams that could lease some of `items` as soon as they are written (see `handoff`).
    pub fn take_parked(&self, items: &[(NewTask, EnqueueContext)], now: Micros) -> Vec<Parked> {
        if self.phase() != Phase::Serving {
            return Vec::new();
        }
        self.parked.take(items, now)
    }

    /// Whether full streams wait for the completions that free their slots (see `handoff`): on PostgreSQL, where
    /// a completion can claim in its own transaction.
    fn refills_by_completions(&self) -> bool {
        self.claim_db.get_database_backend() == sea_orm::DatabaseBackend::Postgres
    }

    /// Takes the full streams that hold some of `leases`, each to claim as many tasks as those leases free for it.
    pub fn take_full(&self, leases: &[(String, serde_json::Value)]) -> Vec<Parked> {
        if self.phase() != Phase::Serving {
            return Vec::new();
        }
        let mut freed: HashMap<u64, u64> = HashMap::new();
        if let Ok(held) = self.leases.lock() {
            for (lease_id, _) in leases {
                if let Some(entry) = held.get(lease_id) {
                    *freed.entry(entry.id).or_default() += 1;
                }
            }
        }
        if freed.is_empty() {
            return Vec::new();
        }
        self.full.take_streams(&freed)
    }

    /// Hands each parked stream what was claimed for it. A stream that ended meanwhile never saw its leases: they
    /// are taken back as a closed stream's are.
    pub async fn hand_over(&self, parked: Vec<Parked>, claimed: Vec<Claimed>) {
        let mut orphaned = Vec::new();
        for (parked, claimed) in parked.into_iter().zip(claimed) {
            let stream_id = parked.stream_id();
            if let Err(claimed) = parked.answer(claimed) {
                tracing::debug!(stream_id, leases = claimed.tasks.len(), "a stream ended before its claim arrived");
                orphaned.extend(claimed.tasks.into_iter().filter_map(|task| task.lease_id));
            }
        }
        if orphaned.is_empty() {
            return;
        }
        let now = self.clock.now();
        match tasks::take_back_leases(&self.db, now, LeaseLoss::StreamClosed, &orphaned).await {
            Ok(changed) => self.taken_back(&changed, now).await,
            // The reaper takes these back at their deadline.
            Err(err) => tracing::error!(error = %err, leases = orphaned.len(), "could not release unclaimed leases"),
        }
    }

    /// Whether this server currently hears the other servers' dispatch signals.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Number of open worker streams.
    pub fn stream_count(&self) -> usize {
        self.streams.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Number of leases held by this server's streams.
    pub fn lease_count(&self) -> usize {
        self.leases.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// A lease ended (settled, or its task cancelled): free its stream's slot, wherever that stream lives.
    pub fn lease_ended(&self, lease_id: &str) {
        if !self.free_slot(lease_id) {
            self.publish(notify::Signal::LeaseEnded(lease_id.to_owned()));
        }
    }

    /// Frees the slot of a lease held by one of this server's streams; false if none holds it.
    fn free_slot(&self, lease_id: &str) -> bool {
        let entry = self.leases.lock().ok().and_then(|mut l| l.remove(lease_id));
        let held = entry.is_some();
        if let Some(entry) = entry {
            if let Ok(mut held) = entry.held.lock() {
                held.remove(lease_id);
            }
            entry.slot_freed.notify_one();
        }
        self.lease_released.notify_waiters();
        held
    }

    /// A lease was withdrawn from its worker (task cancelled, lease expired): tell the worker over its stream,
    /// wherever it lives, and free the slot. If the stream's buffer is full the worker still learns it at its next
    /// heartbeat.
    pub fn lease_withdrawn(&self, lease_id: &str, task_id: &str, reason: &str) {
        if !self.tell_holder(lease_id, task_id, reason) {
            let signal = notify::Signal::LeaseWithdrawn {
                lease_id: lease_id.to_owned(),
                task_id: task_id.to_owned(),
                reason: reason.to_owned(),
            };
            self.publish(signal);
        }
    }

    /// Tells this server's stream holding the lease, if any, and frees the slot.
    fn tell_holder(&self, lease_id: &str, task_id: &str, reason: &str) -> bool {
        let entry = self.leases.lock().ok().and_then(|l| l.get(lease_id).cloned());
        let Some(entry) = entry else {
            // Perhaps claimed here but not yet registered by its stream: the stream drops it instead of pushing it.
            if let Ok(mut early) = self.withdrawn_early.lock() {
                if early.len() >= MAX_WITHDRAWN_EARLY {
                    early.clear();
                }
                early.insert(lease_id.to_owned());
            }
            return false;
        };
        let message = pb::PullTasksResponse {
            event: Some(pb::pull_tasks_response::Event::Cancelled(pb::LeaseCancelled {
                lease_id: lease_id.to_owned(),
                task_id: task_id.to_owned(),
                reason: reason.to_owned(),
            })),
        };
        let _ = entry.outbox.try_send(Ok(message));
        self.free_slot(lease_id)
    }

    /// Writes `output.json` for a task that ended after being leased at least once and, when the task has a work
    /// model and ran to an end, records each file of its trace folder as an Artifact of its last run.
    pub async fn record_outcome(&self, task: &TaskRow) {
        self.record_outcomes(&[task]).await;
    }

    /// `record_outcome` for several tasks, their `output.json` files written in one blocking job.
    pub async fn record_outcomes(&self, tasks: &[&TaskRow]) {
        let ended: Vec<&TaskRow> = tasks.iter().copied().filter(|t| t.status.is_terminal() && t.attempt > 0).collect();
        if ended.is_empty() {
            return;
        }
        let mut outputs = Vec::with_capacity(ended.len());
        let mut written_ended = Vec::with_capacity(ended.len());
        for task in ended {
            match output_json(task) {
                Ok(bytes) => {
                    outputs.push((task.id.as_str(), bytes));
                    written_ended.push(task);
                }
                Err(err) => tracing::error!(task_id = %task.id, error = %err, "could not write output.json"),
            }
        }
        let ended = written_ended;
        let written = match self.traces.write_outputs(outputs).await {
            Ok(written) => written,
            Err(err) => {
                tracing::error!(error = %err, tasks = ended.len(), "could not write output.json files");
                return;
            }
        };
        for (task, written) in ended.into_iter().zip(written) {
            if let Err(err) = written {
                tracing::error!(task_id = %task.id, error = %err, "could not write output.json");
                continue;
            }
            if task.cwom_issue_id.is_none() || task.status == TaskStatus::Cancelled {
                continue;
            }
            if let Err(err) = self.record_artifacts(task).await {
                tracing::error!(task_id = %task.id, error = %err, "could not record the trace files as artifacts");
            }
        }
    }

    async fn record_artifacts(&self, task: &TaskRow) -> crate::error::Result<()> {
        let files = self.traces.files(&task.id).await.map_err(|e| crate::error::Error::internal("trace files", e))?;
        let files: Vec<_> =
            files.into_iter().map(|f| TraceFile { name: f.name, uri: f.uri, sha256: f.sha256, size: f.size }).collect();
        let change = Change { now: self.clock.now(), actor: Actor::server(), trace_id: task.trace_id.clone() };
        let txn = self.db.begin().await?;
        task_model::record_trace_files(&txn, &change, task, &files).await?;
        txn.commit().await?;
        Ok(())
    }

    /// After leases were taken back: requeued tasks are claimable again, failed ones get their `output.json`.
    async fn taken_back(&self, changed: &[TaskRow], now: Micros) {
        let requeued = changed.iter().filter(|t| !t.status.is_terminal()).count();
        if requeued > 0 {
            crate::metrics::global()
                .retries
                .get_or_create(&ReasonLabels { reason: "lease_lost" })
                .inc_by(requeued as u64);
            self.work_available(now);
        }
        for task in changed.iter().filter(|t| t.status.is_terminal()) {
            self.record_outcome(task).await;
        }
    }

    /// The worker is shutting down: stop granting leases to its streams.
    pub fn worker_draining(&self, worker_id: &str) {
        let streams: Vec<_> = self.streams.lock().map(|s| s.values().cloned().collect()).unwrap_or_default();
        for entry in streams.iter().filter(|e| e.worker_id == worker_id) {
            entry.worker_draining.store(true, Ordering::SeqCst);
            entry.slot_freed.notify_one();
        }
    }

    /// Stops granting leases, waits up to `timeout` for held leases to be settled, then closes every stream (which
    /// releases what is still held, for redelivery).
    pub async fn drain(&self, timeout: Duration) {
        self.phase.send_replace(Phase::Draining);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let released = self.lease_released.notified();
            if self.lease_count() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                tracing::warn!(leases = self.lease_count(), "drain timed out; releasing the leases still held");
                break;
            }
        }
        self.phase.send_replace(Phase::Closed);
        // Wait (briefly) for the streams to release their leases and end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.stream_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn register_stream(&self, worker_id: &str, outbox: Outbox) -> Arc<StreamEntry> {
        let entry = Arc::new(StreamEntry {
            id: self.next_stream_id.fetch_add(1, Ordering::Relaxed),
            worker_id: worker_id.to_owned(),
            held: Mutex::default(),
            slot_freed: Notify::new(),
            worker_draining: AtomicBool::new(false),
            outbox,
        });
        if let Ok(mut streams) = self.streams.lock() {
            streams.insert(entry.id, entry.clone());
        }
        entry
    }

    /// Registers a freshly claimed lease with its stream; false if the lease was already withdrawn.
    fn hold(&self, entry: &Arc<StreamEntry>, lease_id: &str) -> bool {
        if self.withdrawn_early.lock().map(|mut early| early.remove(lease_id)).unwrap_or(false) {
            return false;
        }
        if let Ok(mut held) = entry.held.lock() {
            held.insert(lease_id.to_owned());
        }
        if let Ok(mut leases) = self.leases.lock() {
            leases.insert(lease_id.to_owned(), entry.clone());
        }
        true
    }

    /// Takes the leases a closing stream still holds. The stream stays counted until `forget_stream`, so that a
    /// drain waits for their release.
    fn release_held(&self, entry: &StreamEntry) -> Vec<String> {
        let held: Vec<String> = entry.held.lock().map(|mut h| h.drain().collect()).unwrap_or_default();
        if let Ok(mut leases) = self.leases.lock() {
            for lease in &held {
                leases.remove(lease);
            }
        }
        held
    }

    fn forget_stream(&self, entry: &StreamEntry) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(&entry.id);
        }
    }

    /// Pops the wake-up times that have come; returns the earliest one still pending.
    fn due_wakeups(&self, now: Micros) -> (bool, Option<Micros>) {
        let Ok(mut wakeups) = self.wakeups.lock() else {
            return (false, None);
        };
        let mut due = false;
        while let Some(Reverse(at)) = wakeups.peek().copied() {
            if at > now {
                return (due, Some(at));
            }
            wakeups.pop();
            due = true;
        }
        (due, None)
    }
}
