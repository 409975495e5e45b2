//! Time as the control plane sees it: microseconds since the Unix epoch, from a clock that tests can drive.
//!
//! Lease deadlines, backoff and every stored timestamp come from one [`Clock`], so lease expiry can be tested by
//! moving a [`ManualClock`] forward instead of sleeping.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Micros;
}

pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or_default()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at the current wall-clock time, so stored timestamps stay plausible.
    pub fn new() -> Self {
        Self(AtomicI64::new(SystemClock.now()))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_micros(by), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn duration_micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
