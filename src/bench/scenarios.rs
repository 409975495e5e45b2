//! The measurements. Each returns its figures for one run.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{
    Cluster, Figure, Scenario,
    cpu::{self, CpuUse},
};
use crate::{
    client::Authed,
    clock::{Clock, SystemClock},
    config::{BenchArgs, DrainShape},
    json::struct_to_json,
    pb::{self, pull_tasks_response::Event, worker_service_client::WorkerServiceClient},
    trace::{self, TraceLimits, TraceStore},
};

const BATCH: usize = 1000;

fn figure(name: impl Into<String>, unit: &'static str, value: f64) -> Figure {
    Figure { name: name.into(), unit, runs: vec![value] }
}

fn spec(i: usize) -> pb::TaskSpec {
    pb::TaskSpec {
        // The identity the bench calls as when the server checks tokens, which must be the requester.
        requested_by: Some(pb::Requester { kind: "agent".into(), id: "bench".into(), label: String::new() }),
        objective: format!("Benchmark task {i}"),
        operation: "ops".into(),
        target: Some(pb::Target { repo: "bench/control-tower".into(), ..Default::default() }),
        ..Default::default()
    }
}

fn request(i: usize) -> pb::EnqueueTaskRequest {
    pb::EnqueueTaskRequest { spec: Some(spec(i)), create_cwom: false }
}

pub async fn run(scenario: Scenario, args: &BenchArgs, data_dir: &Path) -> anyhow::Result<Vec<Figure>> {
    match scenario {
        Scenario::Drain => return drains(args, data_dir, false).await,
        Scenario::DrainAuth => return drains(args, data_dir, true).await,
        _ => {}
    }
    let mut cluster = Cluster::start(args.database_url.as_deref(), data_dir, false).await?;
    let figures = match scenario {
        Scenario::EnqueueBulk => enqueue_bulk(&cluster, args.tasks).await?,
        Scenario::EnqueueUnary => enqueue_unary(&cluster, args.tasks / 4).await?,
        // Served above: each drain shape starts a cluster of its own.
        Scenario::Drain | Scenario::DrainAuth => Vec::new(),
        Scenario::Latency => latency(&mut cluster, args.latency_samples).await?,
        Scenario::Trace => trace(&cluster, args.trace_mib).await?,
        Scenario::Folders => folders(&cluster, data_dir, args.tasks).await?,
        Scenario::Streams => streams(&cluster, args.streams).await?,
        Scenario::Claim => claim(&cluster, &args.claim_sizes).await?,
    };
    cluster.stop().await?;
    Ok(figures)
}

/// Enqueues `n` tasks in batches from 4 clients; returns tasks/s.
async fn bulk_load(cluster: &Cluster, n: usize) -> anyhow::Result<f64> {
    let clients = 4;
    let started = Instant::now();
    let mut joins = Vec::new();
    for c in 0..clients {
        let mut tasks = cluster.tasks().await?;
        joins.push(tokio::spawn(async move {
            let mut i = c * BATCH;
            while i < n {
                let requests = (i..(i + BATCH).min(n)).map(request).collect();
                let answered = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await?.into_inner();
                // Items fail one by one: a refused item would leave a backlog short of what is measured.
                for result in answered.results {
                    if let Some(pb::enqueue_task_result::Outcome::Error(error)) = result.outcome {
                        anyhow::bail!("a task of the backlog was refused: {}", error.message);
                    }
                }
                i += clients * BATCH;
            }
            anyhow::Ok(())
        }));
    }
    for join in joins {
        join.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Bulk enqueue tasks/s, and the CPU time per task of the server and of PostgreSQL's backends while it ran (the
/// figures that do not move with the machine's noise as much as the rate does; the bench client's is left out).
async fn enqueue_bulk(cluster: &Cluster, n: usize) -> anyhow::Result<Vec<Figure>> {
    let before = cluster.cpu_snapshot().await?;
    let rate = bulk_load(cluster, n).await?;
    let used = cluster.cpu_snapshot().await?.since(&before);
    Ok(enqueue_figures("bulk enqueue", "EnqueueTasks x1000, 4 clients", rate, used, n))
}

/// An enqueue scenario's rate, and the CPU time per task of the server and, when observed, PostgreSQL's backends.
fn enqueue_figures(scenario: &str, shape: &str, rate: f64, used: CpuUse, tasks: usize) -> Vec<Figure> {
    let per_task = |micros: f64| micros / tasks as f64;
    let mut figures = vec![
        figure(format!("{scenario} ({shape})"), "tasks/s", rate),
        figure(format!("{scenario}, CPU per task: server process"), "us", per_task(used.server)),
    ];
    if let Some(postgres) = used.postgres {
        figures.push(figure(format!("{scenario}, CPU per task: PostgreSQL backends"), "us", per_task(postgres)));
    }
    figures
}

/// PostgreSQL write transactions per 1,000 tasks between two readings of `Cluster::next_transaction_id`; None on
/// SQLite.
fn transactions_per_thousand(first: Option<i64>, last: Option<i64>, tasks: usize) -> Option<f64> {
    Some((last? - first?) as f64 * 1000.0 / tasks as f64)
}

/// Unary enqueue tasks/s from 16 clients, each waiting for its answer before the next call, and the CPU time per
/// task of the server and of PostgreSQL's backends while it ran.
async fn enqueue_unary(cluster: &Cluster, n: usize) -> anyhow::Result<Vec<Figure>> {
    let clients = 16;
    let before = cluster.cpu_snapshot().await?;
    let first_transaction = cluster.next_transaction_id().await?;
    let started = Instant::now();
    let mut joins = Vec::new();
    for c in 0..clients {
        let mut tasks = cluster.tasks().await?;
        joins.push(tokio::spawn(async move {
            for i in (c..n).step_by(clients) {
                tasks.enqueue_task(request(i)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for join in joins {
        join.await??;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let used = cluster.cpu_snapshot().await?.since(&before);
    let last_transaction = cluster.next_transaction_id().await?;
    let mut figures = enqueue_figures("unary enqueue", "16 concurrent clients", rate, used, n);
    // How many tasks share a commit: the group commit's groups, seen from the database.
    if let Some(per_thousand) = transactions_per_thousand(first_transaction, last_transaction, n) {
        let name = "unary enqueue, PostgreSQL write transactions per 1,000 tasks";
        figures.push(figure(name, "transactions", per_thousand));
    }
    Ok(figures)
}

/// Drains a backlog of `args.tasks` tasks once per drain shape; returns tasks/s and the CPU time per task of each
/// part of the system, per shape. Each shape gets a server and a database of its own.
async fn drains(args: &BenchArgs, data_dir: &Path, auth: bool) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for shape in &args.drain_shapes {
        let mut cluster = Cluster::start(args.database_url.as_deref(), data_dir, auth).await?;
        let measured = async {
            if auth {
                cluster.ensure_tokens_checked().await?;
            }
            drain(&mut cluster, args.tasks, *shape, auth).await
        }
        .await;
        cluster.stop().await?;
        figures.extend(measured?);
    }
    Ok(figures)
}

async fn drain(cluster: &mut Cluster, tasks: usize, shape: DrainShape, auth: bool) -> anyhow::Result<Vec<Figure>> {
    bulk_load(cluster, tasks).await?;
    let audit_head = cluster.audit_head().await?;
    let before = cluster.cpu_snapshot().await?;
    let first_transaction = cluster.next_transaction_id().await?;
    let started = Instant::now();
    cluster.spawn_workers(shape.workers, shape.concurrency, shape.prefetch)?;
    cluster.wait_drained(tasks, audit_head).await?;
    let rate = tasks as f64 / started.elapsed().as_secs_f64();
    // Before the workers are stopped: a process that is gone has no CPU time to read.
    let used = cluster.cpu_snapshot().await?.since(&before);
    let last_transaction = cluster.next_transaction_id().await?;
    let (workers, concurrency) = (shape.workers, shape.concurrency);
    let prefetch = match shape.prefetch {
        0 => String::new(),
        n => format!(" + {n} prefetched"),
    };
    let tokens = if auth { ", with tokens" } else { "" };
    let shape = format!("{workers} x {concurrency}{prefetch}{tokens}");
    let per_task = |micros: f64| micros / tasks as f64;
    let cpu = |part: &str| format!("drain {shape}, CPU per task: {part}");
    let mut figures = vec![
        figure(
            format!("end-to-end drain of {tasks} no-op tasks, {workers} workers x {concurrency}{prefetch}{tokens}"),
            "tasks/s",
            rate,
        ),
        figure(cpu("server process"), "us", per_task(used.server)),
        figure(cpu("worker processes"), "us", per_task(used.workers)),
    ];
    if let Some(postgres) = used.postgres {
        figures.push(figure(cpu("PostgreSQL backends"), "us", per_task(postgres)));
    }
    if let Some(per_thousand) = transactions_per_thousand(first_transaction, last_transaction, tasks) {
        let name = format!("drain {shape}, PostgreSQL write transactions per 1,000 tasks");
        figures.push(figure(name, "transactions", per_thousand));
    }
    Ok(figures)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One worker, one task at a time: from EnqueueTask returning to the handler starting.
async fn latency(cluster: &mut Cluster, samples: usize) -> anyhow::Result<Vec<Figure>> {
    cluster.spawn_workers(1, 1, 0)?;
    let mut tasks = cluster.tasks().await?;
    // Warm up: the worker is connected once its first task completes.
    tasks.enqueue_task(request(0)).await?;
    cluster.wait_completed(1).await?;
    let mut returned = Vec::with_capacity(samples);
    for i in 1..=samples {
        let called_at = SystemClock.now();
        let task = tasks.enqueue_task(request(i)).await?.into_inner().task.unwrap_or_default();
        returned.push((task.id, called_at, SystemClock.now()));
        // Idle between tasks, so each one meets an idle system.
        cluster.wait_completed(i + 1).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies = Vec::with_capacity(samples);
    let mut from_call = Vec::with_capacity(samples);
    for (id, called_at, returned_at) in returned {
        let task = tasks.get_task(pb::GetTaskRequest { id }).await?.into_inner();
        let result = struct_to_json(task.result.unwrap_or_default());
        let started = result["handler_started_us"].as_i64().unwrap_or(returned_at);
        // The claim may beat the response to the client: that counts as no delay at all.
        latencies.push((started - returned_at).max(0) as f64 / 1000.0);
        from_call.push((started - called_at).max(0) as f64 / 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    from_call.sort_by(f64::total_cmp);
    Ok(vec![
        figure("dispatch latency p50", "ms", percentile(&latencies, 0.5)),
        figure("dispatch latency p95", "ms", percentile(&latencies, 0.95)),
        figure("dispatch latency p99", "ms", percentile(&latencies, 0.99)),
        figure("dispatch latency max", "ms", percentile(&latencies, 1.0)),
        // The whole way, EnqueueTask's own round trip included: what the caller waits before its task runs.
        figure("EnqueueTask called to handler start p50", "ms", percentile(&from_call, 0.5)),
        figure("EnqueueTask called to handler start p99", "ms", percentile(&from_call, 0.99)),
    ])
}

/// One PushTrace of `mib` MiB in 1 MiB chunks under a real lease.
async fn trace(cluster: &Cluster, mib: usize) -> anyhow::Result<Vec<Figure>> {
    let Leased { task, mut workers, lease_id: lease, stream: _stream } = leased_task(cluster, "bench-tracer").await?;
    let block = vec![b'x'; 1 << 20];
    let chunks = (0..mib).map(move |i| pb::TraceChunk {
        lease_id: lease.clone(),
        file: "bench.bin".into(),
        offset: (i << 20) as u64,
        data: block.clone(),
        eof: i + 1 == mib,
    });
    let started = Instant::now();
    workers.push_trace(tokio_stream::iter(chunks)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let on_disk = std::fs::metadata(cluster.trace_root().join(&task.id).join("bench.bin"))?.len();
    Ok(vec![
        figure(format!("trace ingest ({mib} MiB, 1 MiB chunks, fsynced)"), "MiB/s", mib as f64 / seconds),
        figure("trace bytes on disk / bytes sent", "ratio", on_disk as f64 / (mib << 20) as f64),
    ])
}

/// Trace folders written per claim and per completion group, as a drain at 2 x 512 writes them.
const FOLDER_BATCH: usize = 512;

/// The trace folders of `n` drained tasks without the rest of the control plane: each task's folder, `input.json`
/// and `output.json` (API.md: every completed task has them), written through the server's own trace store in the
/// blocking jobs a drain uses, one claim's and one completion group's worth at a time, with the bytes of a task the
/// server drained. The CPU of this process per task, and how much of it the kernel spent, is the part of a drained
/// task's server CPU that no change of the database or the protocol can take away on this file system.
async fn folders(cluster: &Cluster, data_dir: &Path, n: usize) -> anyhow::Result<Vec<Figure>> {
    anyhow::ensure!(n > 0, "the folders scenario needs --tasks of at least 1");
    let (input, output) = drained_task_files(cluster).await?;
    let root = data_dir.join(format!("folders-{}", uuid::Uuid::new_v4().simple()));
    let store = TraceStore::open(&root, TraceLimits::default())?;
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let before = cpu::own_times();
    let started = Instant::now();
    for batch in ids.chunks(FOLDER_BATCH) {
        let attempts = batch.iter().map(|id| (id.clone(), 1, input.clone())).collect();
        store.begin_attempts(attempts).prepare_firsts().await;
        let outputs = batch.iter().map(|id| (id.as_str(), output.clone())).collect();
        for written in store.write_outputs(outputs).await? {
            written?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let used = cpu::own_times().since(&before);
    let per_task = |micros: f64| micros / n as f64;
    // `prepare_firsts` logs a failed `input.json` and goes on, as the server does; a figure for folders that were
    // not all written would flatter, so every file is looked for (after the timing).
    let whole =
        ids.iter().filter(|id| [trace::INPUT_FILE, trace::OUTPUT_FILE].iter().all(|f| root.join(id).join(f).exists()));
    anyhow::ensure!(whole.count() == n, "not every trace folder was written whole");
    Ok(vec![
        figure(
            format!("trace folders of {n} tasks alone (folder, input.json, output.json)"),
            "tasks/s",
            n as f64 / seconds,
        ),
        figure("trace folders alone, CPU per task", "us", per_task(used.user + used.system)),
        figure("trace folders alone, CPU per task in the kernel", "us", per_task(used.system)),
    ])
}

/// The `input.json` and `output.json` the server wrote for a task it leased and saw completed.
async fn drained_task_files(cluster: &Cluster) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let Leased { task, mut workers, lease_id, stream: _stream } = leased_task(cluster, "bench-folders").await?;
    workers.complete_task(pb::CompleteTaskRequest { lease_id, result: Some(Default::default()) }).await?;
    let folder = cluster.trace_root().join(&task.id);
    // CompleteTask answers once `output.json` is written.
    Ok((std::fs::read(folder.join(trace::INPUT_FILE))?, std::fs::read(folder.join(trace::OUTPUT_FILE))?))
}

/// A task the bench enqueued and leased on a stream of its own, which holds the lease while it is open.
struct Leased {
    task: pb::Task,
    workers: WorkerServiceClient<Authed>,
    lease_id: String,
    stream: tonic::Streaming<pb::PullTasksResponse>,
}

async fn leased_task(cluster: &Cluster, worker_id: &str) -> anyhow::Result<Leased> {
    let mut tasks = cluster.tasks().await?;
    let task = tasks.enqueue_task(request(0)).await?.into_inner().task.unwrap_or_default();
    let mut workers = cluster.workers().await?;
    let pull = pb::PullTasksRequest { worker_id: worker_id.into(), operations: vec![], max_in_flight: 1 };
    let mut stream = workers.pull_tasks(pull).await?.into_inner();
    let lease_id = next_lease(&mut stream).await?;
    Ok(Leased { task, workers, lease_id, stream })
}

/// Server memory before and with `n` idle worker streams (100 per connection).
async fn streams(cluster: &Cluster, n: usize) -> anyhow::Result<Vec<Figure>> {
    let idle = cluster.server_rss_mib()?;
    let mut open = Vec::with_capacity(n);
    let mut client = cluster.workers().await?;
    for i in 0..n {
        if i % 100 == 0 {
            client = cluster.workers().await?;
        }
        let pull = pb::PullTasksRequest { worker_id: format!("idle-{i}"), operations: vec![], max_in_flight: 1 };
        open.push(client.pull_tasks(pull).await?.into_inner());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = cluster.server_rss_mib()?;
    drop(open);
    Ok(vec![
        figure("server RSS, idle", "MiB", idle),
        figure(format!("server RSS with {n} idle worker streams"), "MiB", loaded),
    ])
}

/// Settle a lease, then wait for the next assignment: the claim on the server's side, with `size` tasks queued,
/// measured once the audit sealer has caught up with the load.
async fn claim(cluster: &Cluster, sizes: &[usize]) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut queued = 0;
    let mut workers = cluster.workers().await?;
    for &size in sizes {
        if size > queued {
            bulk_load(cluster, size - queued).await?;
            queued = size;
        }
        cluster.wait_sealed().await?;
        let pull = pb::PullTasksRequest { worker_id: format!("claimer-{size}"), operations: vec![], max_in_flight: 1 };
        let mut stream = workers.pull_tasks(pull).await?.into_inner();
        let mut lease = next_lease(&mut stream).await?;
        let mut cycle = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            workers.complete_task(pb::CompleteTaskRequest { lease_id: lease, result: None }).await?;
            lease = next_lease(&mut stream).await?;
            cycle.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        queued -= 201;
        cycle.sort_by(f64::total_cmp);
        figures.push(figure(format!("complete + next claim, {size} queued, p50"), "ms", percentile(&cycle, 0.5)));
        figures.push(figure(format!("complete + next claim, {size} queued, p99"), "ms", percentile(&cycle, 0.99)));
    }
    Ok(figures)
}

async fn next_lease(stream: &mut tonic::Streaming<pb::PullTasksResponse>) -> anyhow::Result<String> {
    loop {
        match stream.message().await? {
            Some(pb::PullTasksResponse { event: Some(Event::Assignment(a)) }) => return Ok(a.lease_id),
            Some(_) => {}
            None => anyhow::bail!("the task stream ended"),
        }
    }
}
