//! `control-tower bench`: measures the control plane end to end with a real server process, real worker
//! processes and a real database, and prints each figure as the median and spread of several runs.
//!
//! Scenarios: bulk and unary enqueue throughput, end-to-end drain of no-op tasks, dispatch latency on an idle
//! system, trace ingest, server memory with many idle worker streams, and claim cost as the queue grows.

mod cluster;
mod cpu;
mod scenarios;

use std::time::Duration;

use clap::ValueEnum;

pub use cluster::Cluster;

use crate::config::BenchArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// EnqueueTasks batches of 1,000 from 4 concurrent clients.
    EnqueueBulk,
    /// Unary EnqueueTask from 16 concurrent clients.
    EnqueueUnary,
    /// A backlog of no-op tasks drained by worker processes.
    Drain,
    /// The drain with bearer tokens: the bench enqueues as an agent and each worker process calls as its own
    /// worker identity, so the server checks every call's token and every completion's lease holder.
    DrainAuth,
    /// From EnqueueTask returning to the handler starting, one task at a time.
    Latency,
    /// PushTrace throughput and the bytes it leaves on disk.
    Trace,
    /// What a drained task's trace folder costs by itself: its folder, `input.json` and `output.json`, written by
    /// the server's own trace store with a real task's files.
    Folders,
    /// Server memory with many idle worker streams.
    Streams,
    /// Time from settling a lease to the next assignment, with a small and a large queue.
    Claim,
}

/// The median, smallest and largest of some measurements.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self { median: values[values.len() / 2], min: values[0], max: values[values.len() - 1] }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = if self.median >= 100.0 { 0 } else { 2 };
        write!(f, "{:.*} ({:.*}-{:.*})", digits, self.median, digits, self.min, digits, self.max)
    }
}

/// One line of the report: a figure measured in each run.
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub runs: Vec<f64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let backend = if args.database_url.is_some() { "postgres" } else { "sqlite" };
    println!("# control-tower bench");
    println!("machine: {}", machine());
    let shapes: Vec<String> = args.drain_shapes.iter().map(ToString::to_string).collect();
    println!(
        "backend: {backend}, runs: {}, tasks: {}, drains (workers x concurrency): {}",
        args.runs,
        args.tasks,
        shapes.join(", ")
    );
    println!();
    println!("| figure | unit | median (min-max) |");
    println!("|---|---|---|");
    // Every run's files stay until the bench ends. Deleting tens of thousands of trace folders between runs would
    // slow the next run's file creation: ext4 without a journal skips inodes deleted within the last minutes.
    let data_dir = tempfile::Builder::new().prefix("control-tower-bench-").tempdir()?;
    for scenario in &args.scenarios {
        let mut figures: Vec<Figure> = Vec::new();
        for _ in 0..args.runs {
            let measured = scenarios::run(*scenario, &args, data_dir.path()).await?;
            for figure in measured {
                match figures.iter_mut().find(|f| f.name == figure.name) {
                    Some(existing) => existing.runs.extend(figure.runs),
                    None => figures.push(figure),
                }
            }
        }
        for figure in figures {
            println!("| {} | {} | {} |", figure.name, figure.unit, Spread::of(figure.runs));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(String::new(), |kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0));
    format!("{cpus} CPUs ({model}), {memory}")
}
