//! The `--exec` handler on its own: the time budget and cancellation stop the command's whole process group.

use std::{path::Path, time::Duration};

use control_tower::{
    pb,
    worker::{ExecHandler, Handler, LogSink, Outcome, TaskContext},
};
use tokio_util::sync::CancellationToken;

fn task(budget_seconds: i32) -> pb::Task {
    pb::Task {
        id: uuid::Uuid::now_v7().to_string(),
        attempt: 1,
        spec: Some(pb::TaskSpec {
            operation: "ops".into(),
            constraints: Some(pb::Constraints { time_budget_seconds: Some(budget_seconds), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A command that starts a background child in its group, records both pids, and then hangs.
fn hanging_command(pids: &Path) -> String {
    format!("sleep 300 & echo $! > {p}; echo $$ >> {p}; echo hanging; wait", p = pids.display())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

async fn pids_in(path: &Path) -> Vec<i32> {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.len() == 2 {
                return pids;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the command never started")
}

async fn assert_all_gone(pids: &[i32]) {
    for _ in 0..500 {
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("processes {pids:?} outlived the task");
}

#[tokio::test]
async fn the_time_budget_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let (log, mut lines) = LogSink::new();
    let ctx = TaskContext { log, cancelled: CancellationToken::new(), worker_id: "w".into() };
    let outcome = ExecHandler::new(hanging_command(&pids)).handle(task(1), ctx).await;
    assert_eq!(outcome, Outcome::Failed { error: "time budget of 1s exceeded".into(), retryable: false });
    assert_all_gone(&pids_in(&pids).await).await;
    let mut log = String::new();
    while let Ok(line) = lines.try_recv() {
        log.push_str(&String::from_utf8_lossy(&line));
    }
    assert!(log.contains("hanging\n") && log.contains("time budget of 1s exceeded"), "{log}");
}

#[tokio::test]
async fn cancellation_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let (log, _lines) = LogSink::new();
    let cancel = CancellationToken::new();
    let ctx = TaskContext { log, cancelled: cancel.clone(), worker_id: "w".into() };
    let running = tokio::spawn(ExecHandler::new(hanging_command(&pids)).handle(task(600), ctx));
    let started = pids_in(&pids).await;
    assert!(started.iter().all(|p| alive(*p)));
    cancel.cancel();
    assert_eq!(running.await.unwrap(), Outcome::Cancelled);
    assert_all_gone(&started).await;
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_the_task() {
    let (log, _lines) = LogSink::new();
    let ctx = TaskContext { log, cancelled: CancellationToken::new(), worker_id: "w".into() };
    let outcome = ExecHandler::new("exit 127").handle(task(60), ctx).await;
    let Outcome::Failed { error, retryable } = outcome else { panic!("{outcome:?}") };
    assert!(error.contains("status 127") && !retryable, "{error}");
}
