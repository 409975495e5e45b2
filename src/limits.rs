//! Per-identity limits: open streams, and the rate at which tasks are enqueued.
//!
//! Callers are told when they may try again: a refused enqueue is RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`.
//! Without auth, every caller counts as one identity, `anonymous`.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

use crate::{
    auth::Identity,
    error::{Error, Result},
};

/// The key of callers without an identity (auth off).
pub const ANONYMOUS: &str = "anonymous";

pub fn key(identity: Option<&Identity>) -> &str {
    identity.map_or(ANONYMOUS, |i| i.id.as_str())
}

/// Open streams per identity. A permit is held by the stream and given back when the stream ends, however it ends.
#[derive(Debug, Clone)]
pub struct StreamQuota {
    max: u32,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

#[derive(Debug)]
pub struct StreamPermit {
    key: String,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl StreamQuota {
    pub fn new(max: u32) -> Self {
        Self { max, open: Arc::default() }
    }

    pub fn acquire(&self, key: &str) -> Result<StreamPermit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.to_owned()).or_default();
        if *count >= self.max {
            return Err(Error::ResourceExhausted(format!(
                "{key:?} already holds {} open streams, the limit (JCT_MAX_STREAMS_PER_IDENTITY); close one first",
                self.max
            )));
        }
        *count += 1;
        Ok(StreamPermit { key: key.to_owned(), open: self.open.clone() })
    }

    pub fn open(&self, key: &str) -> u32 {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or_default()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Tasks per second per identity: a token bucket of `burst` tasks refilled at `rate`.
pub struct EnqueueLimiter {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    clock: DefaultClock,
    burst: NonZeroU32,
}

impl EnqueueLimiter {
    pub fn new(rate: NonZeroU32, burst: NonZeroU32) -> Self {
        let clock = DefaultClock::default();
        let quota = Quota::per_second(rate).allow_burst(burst);
        Self { limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()), clock, burst }
    }

    /// Takes `tasks` from the caller's bucket, or says when there will be enough.
    pub fn check(&self, key: &str, tasks: usize) -> Result<()> {
        let Some(n) = NonZeroU32::new(u32::try_from(tasks).unwrap_or(u32::MAX)) else { return Ok(()) };
        match self.limiter.check_key_n(&key.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Error::RateLimited {
                message: format!("{key:?} is enqueueing faster than its limit (JCT_ENQUEUE_RATE); retry later"),
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
            Err(_) => Err(Error::ResourceExhausted(format!(
                "requests: {tasks} tasks at once is more than the burst limit of {} (JCT_ENQUEUE_BURST)",
                self.burst
            ))),
        }
    }
}

impl std::fmt::Debug for EnqueueLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueLimiter").field("burst", &self.burst).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permit_is_given_back_when_dropped() {
        let quota = StreamQuota::new(2);
        let a = quota.acquire("w").unwrap();
        let _b = quota.acquire("w").unwrap();
        assert!(matches!(quota.acquire("w"), Err(Error::ResourceExhausted(_))));
        assert!(quota.acquire("other").is_ok(), "identities have their own quota");
        drop(a);
        assert_eq!(quota.open("w"), 1);
        assert!(quota.acquire("w").is_ok());
    }

    #[test]
    fn the_bucket_refuses_with_a_retry_delay_and_a_batch_over_the_burst_outright() {
        let limiter = EnqueueLimiter::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(5).unwrap());
        limiter.check("agent", 5).unwrap();
        match limiter.check("agent", 1) {
            Err(Error::RateLimited { retry_after, .. }) => assert!(retry_after.as_millis() <= 100, "{retry_after:?}"),
            other => panic!("{other:?}"),
        }
        limiter.check("another-agent", 5).unwrap();
        assert!(matches!(limiter.check("agent", 6), Err(Error::ResourceExhausted(_))));
    }
}
