//! The `--exec` handler: runs a shell command per task. This is how an agent process plugs in.
//!
//! The command gets the task as JSON on stdin and these environment variables: `JCT_TASK_ID`, `JCT_TRACE_ID`,
//! `JCT_ATTEMPT`, `JCT_OPERATION` and `JCT_RESULT_FILE`. Its stdout and stderr stream into `log.txt` line by line
//! (stderr lines prefixed `[stderr] `). The result is the JSON document the command writes to `$JCT_RESULT_FILE`,
//! else its last stdout line if that is a JSON object, else `{"exit_code": 0}`.
//! Exit status 0 completes the task; 75 (EX_TEMPFAIL) fails it as retryable; any other status or a signal fails it
//! for good. When `time_budget_seconds` runs out, or the task is cancelled, the command's whole process group gets
//! SIGTERM and, 5 seconds later, SIGKILL.

use std::{path::Path, process::Stdio, sync::Arc, time::Duration};

use serde_json::{Value as Json, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::Mutex,
};

use super::handler::{BoxFuture, Handler, LogSink, Outcome, TaskContext};
use crate::{convert::task_document, pb};

/// Exit status that asks for another attempt (sysexits EX_TEMPFAIL).
pub const RETRYABLE_EXIT_CODE: i32 = 75;
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ExecHandler {
    command: String,
}

impl ExecHandler {
    pub fn new(command: impl Into<String>) -> Self {
        Self { command: command.into() }
    }
}

enum Ended {
    Exited(std::process::ExitStatus),
    OutOfTime(i32),
    Cancelled,
}

impl Handler for ExecHandler {
    fn handle(&self, task: pb::Task, ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        let command = self.command.clone();
        Box::pin(async move {
            let workdir = match tempfile::tempdir() {
                Ok(workdir) => workdir,
                Err(err) => {
                    return Outcome::Failed {
                        error: format!("could not make a working folder: {err}"),
                        retryable: false,
                    };
                }
            };
            let outcome = match run(&command, task, ctx, workdir.path()).await {
                Ok(outcome) => outcome,
                Err(err) => Outcome::Failed { error: format!("could not run the command: {err}"), retryable: false },
            };
            // A command may leave a whole checkout behind: deleting it must not hold up the worker's one thread,
            // which serves every other task, the stream and the heartbeats.
            let _ = tokio::task::spawn_blocking(move || drop(workdir)).await;
            outcome
        })
    }
}

async fn run(command: &str, task: pb::Task, ctx: TaskContext, workdir: &Path) -> std::io::Result<Outcome> {
    let result_file = workdir.join("result.json");
    let spec = task.spec.clone().unwrap_or_default();
    let budget = spec.constraints.as_ref().and_then(|c| c.time_budget_seconds).unwrap_or(900).max(1);

    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(workdir)
        .env("JCT_TASK_ID", &task.id)
        .env("JCT_TRACE_ID", &task.trace_id)
        .env("JCT_ATTEMPT", task.attempt.to_string())
        .env("JCT_OPERATION", &spec.operation)
        .env("JCT_RESULT_FILE", &result_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that stopping it stops everything it started.
        .process_group(0)
        .kill_on_drop(true);
    die_with_worker(&mut shell);
    let mut child = shell.spawn()?;
    let pid = child.id();

    let input = serde_json::to_vec(&task_document(&task))?;
    let mut stdin = child.stdin.take();
    let feed = tokio::spawn(async move {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its stdin closes the pipe early; that is its choice.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    });
    let last_stdout = Arc::new(Mutex::new(None::<String>));
    let last_stderr = Arc::new(Mutex::new(None::<String>));
    let readers = [
        spawn_reader(child.stdout.take(), ctx.log.clone(), "", last_stdout.clone()),
        spawn_reader(child.stderr.take(), ctx.log.clone(), "[stderr] ", last_stderr.clone()),
    ];

    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(err) => {
                signal_group(pid, libc::SIGKILL);
                return Err(err);
            }
        },
        _ = tokio::time::sleep(Duration::from_secs(budget as u64)) => Ended::OutOfTime(budget),
        _ = ctx.cancelled.cancelled() => Ended::Cancelled,
    };
    if !matches!(ended, Ended::Exited(_)) {
        stop_group(pid, &mut child).await;
    }
    // Whatever the command left running in its group must not outlive the task (it would hold the pipes open).
    signal_group(pid, libc::SIGKILL);
    feed.abort();
    // A process that left the group (setsid) may still hold a pipe: read what comes quickly, then stop reading.
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(KILL_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }

    let status = match ended {
        Ended::Exited(status) => status,
        Ended::OutOfTime(budget) => {
            ctx.log.line(format!("[control-tower] time budget of {budget}s exceeded; the command was stopped"));
            return Ok(Outcome::Failed { error: format!("time budget of {budget}s exceeded"), retryable: false });
        }
        Ended::Cancelled => {
            ctx.log.line("[control-tower] cancelled; the command was stopped");
            return Ok(Outcome::Cancelled);
        }
    };
    let last_stderr = last_stderr.lock().await.clone();
    let detail = last_stderr.map(|l| format!(": {l}")).unwrap_or_default();
    match status.code() {
        Some(0) => Ok(result_of(&result_file, last_stdout.lock().await.as_deref()).await),
        Some(RETRYABLE_EXIT_CODE) => Ok(Outcome::Failed {
            error: format!("command exited with status {RETRYABLE_EXIT_CODE} (retryable){detail}"),
            retryable: true,
        }),
        Some(code) => {
            Ok(Outcome::Failed { error: format!("command exited with status {code}{detail}"), retryable: false })
        }
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or_default();
            Ok(Outcome::Failed { error: format!("command was killed by signal {signal}{detail}"), retryable: false })
        }
    }
}

/// The result document: the result file, else the last stdout line if it is a JSON object, else the exit code.
async fn result_of(result_file: &std::path::Path, last_stdout: Option<&str>) -> Outcome {
    match tokio::fs::read(result_file).await {
        Ok(bytes) if !bytes.is_empty() => match serde_json::from_slice::<Json>(&bytes) {
            Ok(Json::Object(map)) => Outcome::Completed(Json::Object(map)),
            Ok(other) => Outcome::Completed(json!({ "value": other })),
            Err(err) => {
                Outcome::Failed { error: format!("$JCT_RESULT_FILE does not hold valid JSON: {err}"), retryable: false }
            }
        },
        _ => match last_stdout.and_then(|line| serde_json::from_str::<Json>(line).ok()) {
            Some(Json::Object(map)) => Outcome::Completed(Json::Object(map)),
            _ => Outcome::Completed(json!({ "exit_code": 0 })),
        },
    }
}

fn spawn_reader<R>(
    pipe: Option<R>,
    log: LogSink,
    prefix: &'static str,
    last_line: Arc<Mutex<Option<String>>>,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let Some(pipe) = pipe else { return };
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.line(format!("{prefix}{line}"));
            if !line.trim().is_empty() {
                *last_line.lock().await = Some(line);
            }
        }
    })
}

/// On Linux the command is killed when the worker dies, even by SIGKILL, so that a crashed worker leaves no agent
/// running a task that will be redelivered elsewhere. (Start the agent with `exec` so that it is the direct child.)
#[cfg(target_os = "linux")]
fn die_with_worker(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_worker(_command: &mut Command) {}

/// SIGTERM to the group, then SIGKILL if it is still there after the grace period.
async fn stop_group(pid: Option<u32>, child: &mut Child) {
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

fn signal_group(pid: Option<u32>, signal: libc::c_int) {
    let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group we created for this command; it touches no
    // memory of ours. A group that is already gone yields ESRCH, which is fine.
    unsafe {
        libc::kill(-pid, signal);
    }
}
