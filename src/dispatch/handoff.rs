//! Streams waiting for work, parked where an enqueue can serve them.
//!
//! A stream with free slots that found nothing to claim parks here before it sleeps. An enqueue that writes tasks
//! takes parked streams and claims for them inside its own transaction (see `tasks::enqueue_many_claiming`), then
//! hands each stream its claim: the task reaches its worker after one commit instead of two (the enqueue's, then
//! the stream's own claim). A parked stream that wakes for another reason leaves; if an enqueue took it first, it
//! waits for that enqueue's answer instead, so a stream never has two claims in flight.
//!
//! A stream whose slots are all taken parks the same way, in a place of its own, where the completions that free
//! its slots can claim its next tasks in their own transaction (see `tasks::complete_many_claiming`): with few
//! tasks in flight, every task otherwise waits for two commits in a row, the completion's and then the claim's.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, atomic::Ordering},
};

use tokio::sync::oneshot;

use super::StreamEntry;
use crate::{
    clock::Micros,
    spec::NewTask,
    store::tasks::{ClaimRequest, Claimed, EnqueueContext},
};

/// A parked stream and the claim it would make.
pub struct Parked {
    stream: Arc<StreamEntry>,
    pub request: ClaimRequest,
    reply: oneshot::Sender<Claimed>,
}

impl Parked {
    /// Gives the stream what was claimed for it; if the stream has gone, returns the claim to the caller, whose
    /// leases are then nobody's.
    pub fn answer(self, claimed: Claimed) -> Result<(), Claimed> {
        self.reply.send(claimed)
    }

    pub fn stream_id(&self) -> u64 {
        self.stream.id
    }
}

/// A stream's place among the parked ones.
pub struct Ticket {
    turn: u64,
    answer: oneshot::Receiver<Claimed>,
}

impl Ticket {
    /// What an enqueue claimed for the stream; `None` when its transaction failed (the stream looks on its own).
    pub async fn answer(&mut self) -> Option<Claimed> {
        (&mut self.answer).await.ok()
    }
}

#[derive(Default)]
pub struct ParkedStreams {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_turn: u64,
    /// In the order they parked: the stream that has waited longest is served first.
    by_turn: BTreeMap<u64, Parked>,
}

impl ParkedStreams {
    pub fn park(&self, stream: Arc<StreamEntry>, request: ClaimRequest) -> Ticket {
        let (reply, answer) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let turn = inner.next_turn;
        inner.next_turn += 1;
        inner.by_turn.insert(turn, Parked { stream, request, reply });
        Ticket { turn, answer }
    }

    /// Leaves; returns what an enqueue claimed for the stream if one took it before it could leave.
    pub async fn leave(&self, mut ticket: Ticket) -> Option<Claimed> {
        let was_parked = self.inner.lock().unwrap_or_else(|e| e.into_inner()).by_turn.remove(&ticket.turn).is_some();
        if was_parked {
            return None;
        }
        // Taken by an enqueue whose transaction is running: its answer comes once it commits.
        ticket.answer().await
    }

    /// Takes the parked streams that could lease some of `items` right away, longest waiting first, until their free
    /// slots cover those items. Only tasks the one-statement claim leases count: no work model, no concurrency key,
    /// due now.
    pub fn take(&self, items: &[(NewTask, EnqueueContext)], now: Micros) -> Vec<Parked> {
        let due: Vec<&str> = items
            .iter()
            .filter(|(task, ctx)| {
                !ctx.create_cwom && task.concurrency_key.is_none() && task.run_after.is_none_or(|at| at <= now)
            })
            .map(|(task, _)| task.operation.as_str())
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut turns = Vec::new();
        let mut slots = 0u64;
        for (turn, parked) in &inner.by_turn {
            if slots >= due.len() as u64 {
                break;
            }
            let operations = &parked.request.operations;
            if operations.is_empty() || due.iter().any(|op| operations.iter().any(|o| o == op)) {
                turns.push(*turn);
                slots += parked.request.limit;
            }
        }
        turns.into_iter().filter_map(|turn| inner.by_turn.remove(&turn)).collect()
    }

    /// Takes the parked streams named in `freed`, each to claim as many tasks as `freed` gives it: the slots that
    /// a group of completions is about to free.
    pub fn take_streams(&self, freed: &HashMap<u64, u64>) -> Vec<Parked> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let turns: Vec<u64> =
            // A worker that is shutting down gets nothing new; its stream stays parked until it wakes.
            inner
                .by_turn
                .iter()
                .filter(|(_, p)| freed.contains_key(&p.stream.id) && !p.stream.worker_draining.load(Ordering::SeqCst))
                .map(|(turn, _)| *turn)
                .collect();
        turns
            .into_iter()
            .filter_map(|turn| inner.by_turn.remove(&turn))
            .map(|mut parked| {
                parked.request.limit = freed[&parked.stream.id];
                parked
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::sync::{Notify, mpsc};

    use super::*;

    fn stream(id: u64) -> Arc<StreamEntry> {
        let (outbox, _) = mpsc::channel(1);
        Arc::new(StreamEntry {
            id,
            worker_id: format!("worker-{id}"),
            held: Default::default(),
            slot_freed: Notify::new(),
            worker_draining: AtomicBool::new(false),
            outbox,
        })
    }

    fn request(limit: u64, operations: &[&str]) -> ClaimRequest {
        ClaimRequest {
            worker_id: String::new(),
            operations: operations.iter().map(|o| o.to_string()).collect(),
            limit,
            lease_timeout: 0,
            trace_uri_prefix: String::new(),
            concurrency_limit: 1,
        }
    }

    fn item(operation: &str) -> (NewTask, EnqueueContext) {
        let task = NewTask {
            version: "1".into(),
            idempotency_key: None,
            requested_by_kind: "system".into(),
            requested_by_id: "test".into(),
            requested_by_label: None,
            objective: "Test".into(),
            operation: operation.into(),
            target_repo: "test/repo".into(),
            target_ref: "main".into(),
            target_path: String::new(),
            time_budget_seconds: 60,
            allow_network: false,
            allow_secrets: false,
            inputs: serde_json::json!({}),
            metadata: serde_json::json!({}),
            acceptance_criteria: Vec::new(),
            evidence_requirements: Vec::new(),
            priority: 0,
            max_attempts: None,
            run_after: None,
            concurrency_key: None,
        };
        (task, EnqueueContext { trace_id: "t".into(), default_max_attempts: 3, create_cwom: false })
    }

    fn ids(parked: &[Parked]) -> Vec<u64> {
        parked.iter().map(Parked::stream_id).collect()
    }

    #[test]
    fn an_enqueue_takes_the_longest_waiting_streams_that_take_its_tasks_until_their_slots_cover_them() {
        let parked = ParkedStreams::default();
        let _tickets: Vec<Ticket> = [(1, 2, vec!["build"]), (2, 1, vec![]), (3, 4, vec!["ops"]), (4, 1, vec![])]
            .into_iter()
            .map(|(id, limit, ops)| parked.park(stream(id), request(limit, &ops)))
            .collect();
        // Two "ops" tasks: stream 1 handles only "build"; stream 2 (one slot) and stream 3 cover both.
        assert_eq!(ids(&parked.take(&[item("ops"), item("ops")], 0)), [2, 3]);
        // Nothing due now: a task for later, a keyed task, a task with a work model.
        let mut later = item("ops");
        later.0.run_after = Some(10);
        let mut keyed = item("ops");
        keyed.0.concurrency_key = Some("k".into());
        let mut modelled = item("ops");
        modelled.1.create_cwom = true;
        assert!(parked.take(&[later, keyed, modelled], 5).is_empty());
        assert_eq!(ids(&parked.take(&[item("build")], 0)), [1]);
        assert_eq!(ids(&parked.take(&[item("build")], 0)), [4]);
        assert!(parked.take(&[item("build")], 0).is_empty());
    }

    #[tokio::test]
    async fn a_stream_leaves_unless_taken_and_then_gets_the_answer_or_nothing() {
        let parked = ParkedStreams::default();
        let ticket = parked.park(stream(1), request(1, &[]));
        assert!(parked.leave(ticket).await.is_none());
        assert!(parked.take(&[item("ops")], 0).is_empty(), "a stream that left is not taken");

        let ticket = parked.park(stream(2), request(1, &[]));
        let taken = parked.take(&[item("ops")], 0).pop().unwrap();
        let answering = tokio::spawn(async move { taken.answer(Claimed { tasks: Vec::new(), capped: 7 }).is_ok() });
        let claimed = parked.leave(ticket).await.expect("the answer of the enqueue that took it");
        assert_eq!(claimed.capped, 7);
        assert!(answering.await.unwrap());

        // The enqueue failed: its parked streams are dropped unanswered.
        let ticket = parked.park(stream(3), request(1, &[]));
        drop(parked.take(&[item("ops")], 0));
        assert!(parked.leave(ticket).await.is_none());

        // The stream went away first: the claim comes back to the enqueue.
        let ticket = parked.park(stream(4), request(1, &[]));
        let taken = parked.take(&[item("ops")], 0).pop().unwrap();
        drop(ticket);
        assert!(taken.answer(Claimed::default()).is_err());
    }
}
