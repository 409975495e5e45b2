//! The dispatcher's background loop: fires scheduled wake-ups (retries after backoff) on time, and every sweep
//! interval reaps expired leases and nudges idle streams to look at the queue again.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Dispatcher;
use crate::{
    error::Result,
    store::tasks::{self, LeaseLoss},
};

pub fn spawn_maintenance(dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let sweep_interval = dispatcher.config.sweep_interval;
        // A vacuum of a large table takes seconds: it runs beside the sweeps, one at a time.
        let mut vacuum: Option<JoinHandle<()>> = None;
        let mut next_sweep = tokio::time::Instant::now() + sweep_interval;
        loop {
            let now = dispatcher.clock.now();
            let (due, next_wakeup) = dispatcher.due_wakeups(now);
            if due {
                dispatcher.work_available(now);
            }
            let mut wake_at = next_sweep;
            if let Some(at) = next_wakeup {
                let until = Duration::from_micros(u64::try_from(at - now).unwrap_or(0));
                wake_at = wake_at.min(tokio::time::Instant::now() + until);
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Some(vacuum) = vacuum {
                        vacuum.abort();
                    }
                    return;
                }
                _ = dispatcher.wakeup_added.notified() => continue,
                _ = tokio::time::sleep_until(wake_at) => {}
            }
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + sweep_interval;
                if let Err(err) = dispatcher.reap_expired().await {
                    tracing::warn!(error = %err, "lease reaper failed; retrying at the next sweep");
                }
                let now = dispatcher.clock.now();
                dispatcher.work_available(now);
                match tasks::refresh_statistics(&dispatcher.db).await {
                    Ok(true) => tracing::debug!("task table analyzed"),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "could not refresh the task table's statistics"),
                }
                if vacuum.as_ref().is_none_or(|v| v.is_finished()) {
                    let db = dispatcher.db.clone();
                    vacuum = Some(tokio::spawn(async move {
                        match tasks::vacuum_if_unattended(&db).await {
                            Ok(true) => tracing::debug!("task table vacuumed"),
                            Ok(false) => {}
                            Err(err) => tracing::warn!(error = %err, "could not vacuum the task table"),
                        }
                    }));
                }
                // Tasks scheduled by others (another server, or before a restart) get a timer here too.
                match tasks::next_scheduled(&dispatcher.db, now).await {
                    Ok(Some(at)) => dispatcher.work_available(at),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "could not look up the next scheduled task"),
                }
            }
        }
    })
}

impl Dispatcher {
    /// Takes back every lease whose deadline has passed and tells the workers that held them. Returns how many.
    pub async fn reap_expired(&self) -> Result<usize> {
        let now = self.clock.now();
        let changed = tasks::take_back_leases(&self.db, now, LeaseLoss::Expired, &[]).await?;
        crate::metrics::global().lease_expiries.inc_by(changed.len() as u64);
        for task in &changed {
            tracing::warn!(task_id = %task.id, worker_id = ?task.worker_id, status = task.status.as_str(), "lease expired");
            if let Some(lease_id) = &task.lease_id {
                self.lease_withdrawn(lease_id, &task.id, "lease expired: no heartbeat before the deadline");
            }
        }
        self.taken_back(&changed, now).await;
        Ok(changed.len())
    }
}
