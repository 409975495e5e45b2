//! Wake-ups across servers sharing one PostgreSQL database, over LISTEN/NOTIFY.
//!
//! Each server publishes what other servers' streams need to hear: new claimable work (so a worker connected
//! anywhere gets a task enqueued anywhere within milliseconds), a lease that ended on this server but is held by a
//! stream elsewhere (so that stream frees its slot), and a lease withdrawn by a cancellation (so the worker holding
//! it is told wherever its stream lives). Notifications are only wake-ups: every decision is re-read from the
//! database, and the periodic sweep covers anything lost while a listener reconnects. SQLite has one server and
//! publishes nothing.

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, sqlx::postgres::PgListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Dispatcher;
use crate::clock::Micros;

pub const CHANNEL: &str = "controltower_dispatch";

/// What one server tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Work becomes claimable at this time.
    Work(Micros),
    /// A lease ended; its stream may free the slot.
    LeaseEnded(String),
    /// A lease was withdrawn (its task cancelled): tell its worker.
    LeaseWithdrawn { lease_id: String, task_id: String, reason: String },
}

impl Signal {
    /// `<server> <kind> <fields...>`; the reason, last, may contain spaces.
    pub fn encode(&self, server: &str) -> String {
        match self {
            Self::Work(at) => format!("{server} work {at}"),
            Self::LeaseEnded(lease) => format!("{server} ended {lease}"),
            Self::LeaseWithdrawn { lease_id, task_id, reason } => {
                format!("{server} withdrawn {lease_id} {task_id} {reason}")
            }
        }
    }

    /// The sender and the signal; `None` for anything malformed.
    pub fn decode(payload: &str) -> Option<(&str, Self)> {
        let mut parts = payload.splitn(3, ' ');
        let (server, kind, rest) = (parts.next()?, parts.next()?, parts.next().unwrap_or_default());
        let signal = match kind {
            "work" => Self::Work(rest.parse().ok()?),
            "ended" => Self::LeaseEnded(rest.to_owned()),
            "withdrawn" => {
                let mut fields = rest.splitn(3, ' ');
                Self::LeaseWithdrawn {
                    lease_id: fields.next()?.to_owned(),
                    task_id: fields.next()?.to_owned(),
                    reason: fields.next().unwrap_or_default().to_owned(),
                }
            }
            _ => return None,
        };
        Some((server, signal))
    }
}

impl Dispatcher {
    /// Tells the other servers, after the change has committed. Publishing never blocks the caller and a lost
    /// notification only delays a wake-up until the next sweep.
    pub(super) fn publish(&self, signal: Signal) {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            return;
        }
        let db = self.db.clone();
        let payload = signal.encode(&self.server_id);
        let is_work = matches!(signal, Signal::Work(_));
        let dispatcher_pending = is_work.then(|| self.work_signal_pending.clone());
        tokio::spawn(async move {
            if let Some(pending) = dispatcher_pending {
                pending.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            let notify = Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [CHANNEL.into(), payload.into()],
            );
            if let Err(err) = db.execute_raw(notify).await {
                tracing::warn!(error = %err, "could not notify the other servers");
            }
        });
    }

    fn receive(&self, signal: Signal) {
        match signal {
            Signal::Work(at) => self.wake(at),
            Signal::LeaseEnded(lease) => {
                self.free_slot(&lease);
            }
            Signal::LeaseWithdrawn { lease_id, task_id, reason } => {
                self.tell_holder(&lease_id, &task_id, &reason);
            }
        }
    }
}

/// Listens for the other servers' signals until `stop`, reconnecting with backoff. Does nothing on SQLite.
pub fn spawn_listener(
    dispatcher: Arc<Dispatcher>,
    database_url: String,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    if dispatcher.db.get_database_backend() != DatabaseBackend::Postgres {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match listen(&dispatcher, &database_url, &stop).await {
                Ok(()) => return,
                Err(err) => tracing::warn!(error = %err, ?delay, "lost the notification listener; reconnecting"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
            // Whatever was announced while we were away is found by looking again.
            dispatcher.wake(dispatcher.clock.now());
        }
    }))
}

async fn listen(dispatcher: &Dispatcher, url: &str, stop: &CancellationToken) -> Result<(), sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    tracing::info!("listening for the other servers' dispatch signals");
    dispatcher.listening.store(true, std::sync::atomic::Ordering::SeqCst);
    loop {
        let notification = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            notification = listener.recv() => notification,
        };
        let notification = match notification {
            Ok(notification) => notification,
            Err(err) => {
                dispatcher.listening.store(false, std::sync::atomic::Ordering::SeqCst);
                return Err(err);
            }
        };
        match Signal::decode(notification.payload()) {
            Some((sender, _)) if sender == dispatcher.server_id => {}
            Some((_, signal)) => dispatcher.receive(signal),
            None => tracing::warn!(payload = notification.payload(), "ignoring a malformed dispatch signal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip() {
        for signal in [
            Signal::Work(1_700_000_000_000_000),
            Signal::LeaseEnded("abc123".into()),
            Signal::LeaseWithdrawn {
                lease_id: "l1".into(),
                task_id: "t1".into(),
                reason: "task cancelled: a b".into(),
            },
        ] {
            let payload = signal.encode("server-1");
            assert_eq!(Signal::decode(&payload), Some(("server-1", signal)));
        }
        assert_eq!(Signal::decode("server-1 bogus"), None);
    }
}
