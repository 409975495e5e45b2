//! Where a scenario's CPU time goes: the server process, the worker processes and, when PostgreSQL runs on this
//! machine, the PostgreSQL backends serving the run's database. Read from `/proc` (user + system time), so that
//! the split between the parts comes with every run instead of from a separate profile.

use std::collections::HashMap;

/// CPU time so far, in microseconds, per process id, for each part of the system under measurement.
#[derive(Debug, Default, Clone)]
pub struct CpuSnapshot {
    pub server: HashMap<u32, f64>,
    pub workers: HashMap<u32, f64>,
    /// Empty when PostgreSQL is not in use or not on this machine.
    pub postgres: HashMap<u32, f64>,
}

/// CPU time used between two snapshots, in microseconds, per part.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub server: f64,
    pub workers: f64,
    /// None when the backends could not be observed.
    pub postgres: Option<f64>,
}

impl CpuSnapshot {
    /// What each part used since `earlier`. A process absent from `earlier` (a worker started in between) counts
    /// from its start.
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let used = |now: &HashMap<u32, f64>, then: &HashMap<u32, f64>| {
            now.iter().map(|(pid, micros)| micros - then.get(pid).copied().unwrap_or(0.0)).sum::<f64>()
        };
        CpuUse {
            server: used(&self.server, &earlier.server),
            workers: used(&self.workers, &earlier.workers),
            postgres: (!self.postgres.is_empty()).then(|| used(&self.postgres, &earlier.postgres)),
        }
    }
}

/// CPU time so far of each of `pids` that is still there, in microseconds.
pub fn of_processes(pids: impl IntoIterator<Item = u32>) -> HashMap<u32, f64> {
    pids.into_iter().filter_map(|pid| process_micros(pid).map(|micros| (pid, micros))).collect()
}

/// User + system CPU time of process `pid` so far, in microseconds; None if it is gone or there is no `/proc`.
pub fn process_micros(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat).map(|ticks| ticks as f64 * 1e6 / clock_ticks_per_second())
}

/// utime + stime from a `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold spaces,
/// so fields are counted from the last `)`: utime and stime are fields 14 and 15 of the line.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of this process so far, user and kernel apart, in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OwnTimes {
    pub user: f64,
    pub system: f64,
}

impl OwnTimes {
    pub fn since(&self, earlier: &OwnTimes) -> OwnTimes {
        OwnTimes { user: self.user - earlier.user, system: self.system - earlier.system }
    }
}

/// This process's CPU time so far, from `getrusage`, which counts in microseconds where `/proc` counts in ticks.
pub fn own_times() -> OwnTimes {
    // SAFETY: an all-zero `rusage` is a valid value, and getrusage writes into the one we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF cannot fail with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    OwnTimes { user: micros(usage.ru_utime), system: micros(usage.ru_stime) }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Whether process `pid` here is a PostgreSQL process.
pub fn is_postgres_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|name| name.trim_end() == "postgres")
}

/// Whether a PostgreSQL URL names this machine, where its backends' process ids are ours to read.
pub fn is_local_postgres(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    // A `host` option overrides the URL's host: a socket folder (an absolute path) is local.
    let options = rest.split_once('?').map_or("", |(_, options)| options);
    if let Some(host) = options.split('&').find_map(|option| option.strip_prefix("host=")) {
        return host.starts_with('/') || matches!(host, "localhost" | "127.0.0.1" | "::1");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    // An empty host means a Unix socket, which is local too.
    matches!(host, "" | "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks_past_a_command_name_with_spaces() {
        let stat = "4242 (tokio rt) worker) S 1 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat), Some(168));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin: u64 = (0..2_000_000u64).fold(0, |acc, i| acc.wrapping_add(i * i));
        assert!(spin > 0);
        assert!(process_micros(std::process::id()).is_some_and(|micros| micros > 0.0));
    }

    #[test]
    fn this_process_is_charged_for_its_own_work_in_user_and_kernel_time() {
        let before = own_times();
        let spin: u64 = (0..20_000_000u64).fold(0, |acc, i| acc.wrapping_add(i * i));
        assert!(spin > 0);
        let dir = tempfile::tempdir().unwrap();
        for i in 0..2000 {
            std::fs::write(dir.path().join(i.to_string()), b"x").unwrap();
        }
        let used = own_times().since(&before);
        assert!(used.user > 0.0 && used.system > 0.0, "{used:?}");
    }

    #[test]
    fn a_postgres_process_is_known_by_its_name() {
        assert!(!is_postgres_process(std::process::id()));
        assert!(!is_postgres_process(u32::MAX));
    }

    #[test]
    fn processes_absent_before_count_from_their_start() {
        let before = CpuSnapshot { server: HashMap::from([(1, 100.0)]), ..Default::default() };
        let after = CpuSnapshot {
            server: HashMap::from([(1, 350.0)]),
            workers: HashMap::from([(2, 40.0), (3, 60.0)]),
            postgres: HashMap::new(),
        };
        assert_eq!(after.since(&before), CpuUse { server: 250.0, workers: 100.0, postgres: None });
    }

    #[test]
    fn only_postgres_on_this_machine_is_observed() {
        assert!(is_local_postgres("postgres://postgres@127.0.0.1:5432/test?sslmode=disable"));
        assert!(is_local_postgres("postgres://u@localhost/db"));
        assert!(is_local_postgres("postgres://u@[::1]:5432/db"));
        assert!(is_local_postgres("postgres:///db?host=/var/run/postgresql"));
        assert!(!is_local_postgres("postgres://u@db.example.com:5432/db"));
        assert!(!is_local_postgres("postgres://u@10.0.0.5/db"));
        assert!(!is_local_postgres("postgres://u@/db?host=db.example.com"));
        assert!(is_local_postgres("postgres://u@db.example.com/db?sslmode=disable&host=/tmp"));
    }
}
