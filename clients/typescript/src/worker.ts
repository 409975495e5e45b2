// Run an async function as a Control Tower worker.
//
//   const worker = new Worker({ target: "127.0.0.1:50051", workerId: "ts-agent-1", concurrency: 4 });
//   worker.handle(async (ctx) => {
//     ctx.log(`working on ${ctx.task.spec?.objective}`);
//     return { answer: 42 };            // completes the task with this result
//   });
//   await worker.run();                 // until worker.stop()
//
// The worker keeps one PullTasks stream open (`concurrency` tasks run at once; with `prefetch`, that many more are
// leased ahead and wait in the worker, in arrival order), heartbeats the leases it holds, streams each task's `ctx.log` lines into its log.txt while it runs, completes the task with the handler's
// result or fails it with the thrown error (`Retryable` sends it back to the queue), reconnects with backoff when the
// server goes away, and aborts `ctx.signal` when the task is cancelled or the lease is lost.
import { type ClientWritableStream, status } from "@grpc/grpc-js";

import type { Task } from "./generated/controltower/v1/tasks";
import type { PullTasksResponse, PushTraceResponse, TaskAssignment, TraceChunk } from "./generated/controltower/v1/workers";
import { ControlTower, type ConnectOptions, follow } from "./client";
import { ControlTowerError } from "./errors";

/** Throw from a handler to fail the task retryably: it goes back to the queue until its attempts run out. */
export class Retryable extends Error {
  constructor(message = "retryable failure") {
    super(message);
    this.name = "Retryable";
  }
}

/** What a handler gets: the task, its inputs, a log, and a signal that aborts when the work must stop. */
export class TaskContext {
  readonly task: Task;
  readonly leaseId: string;
  readonly attempt: number;
  readonly inputs: { [key: string]: any };
  private readonly abort = new AbortController();
  private offset = 0;
  private logClosed = false;

  constructor(
    assignment: TaskAssignment,
    private readonly upload: ClientWritableStream<TraceChunk>,
  ) {
    this.task = assignment.task!;
    this.leaseId = assignment.leaseId;
    this.attempt = assignment.attempt;
    this.inputs = this.task.spec?.inputs ?? {};
  }

  /** Aborted when the task is cancelled or the lease is lost: stop the work, its result would be refused. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get cancelled(): boolean {
    return this.abort.signal.aborted;
  }

  /** Appends a line to the task's log.txt; it is streamed to the server while the task runs. */
  log(line: string): void {
    if (this.logClosed) return; // a line logged after the handler returned has nowhere to go
    const data = Buffer.from(line.replace(/\n$/, "") + "\n", "utf8");
    this.upload.write({ leaseId: this.leaseId, file: "log.txt", offset: this.offset, data, eof: false });
    this.offset += data.length;
  }

  /** @internal */
  cancel(reason: string): void {
    this.abort.abort(reason);
  }

  /** @internal Marks log.txt complete; the upload's response then says it is on disk. */
  finishLog(): void {
    this.logClosed = true;
    this.upload.write({ leaseId: this.leaseId, file: "log.txt", offset: this.offset, data: Buffer.alloc(0), eof: true });
    this.upload.end();
  }
}

export type Handler = (ctx: TaskContext) => Promise<{ [key: string]: any } | void> | { [key: string]: any } | void;

export interface WorkerOptions extends ConnectOptions {
  target: string;
  /** 1-128 characters of [A-Za-z0-9._:@-]. */
  workerId: string;
  /** Operations this worker handles; all when empty. */
  operations?: string[];
  /** Tasks run at once. */
  concurrency?: number;
  /**
   * Tasks leased ahead beyond `concurrency`, waiting in the worker (in arrival order, heartbeated) so that a finished
   * task's slot is taken at once. concurrency + prefetch is at most 1000.
   */
  prefetch?: number;
  heartbeatMs?: number;
}

// Codes after which the worker reconnects; any other refusal (a bad worker id, no permission) ends `run`.
const TRANSIENT = new Set([status.UNAVAILABLE, status.CANCELLED, status.INTERNAL, status.UNKNOWN]);

export class Worker {
  readonly tower: ControlTower;
  private handler?: Handler;
  /** Every lease held, running or waiting for a slot (what heartbeats name and cancellations reach). */
  private readonly running = new Map<string, { cancel(reason: string): void }>();
  private readonly concurrency: number;
  private readonly prefetch: number;
  private active = 0;
  /** Tasks waiting for a slot, first come first served. */
  private readonly queued: (() => void)[] = [];
  private readonly stopping = new AbortController();
  private draining = false;

  constructor(private readonly options: WorkerOptions) {
    this.concurrency = options.concurrency ?? 4;
    this.prefetch = options.prefetch ?? 0;
    const whole = (n: number) => Number.isInteger(n) && n >= 0;
    if (!whole(this.concurrency) || this.concurrency < 1 || !whole(this.prefetch) || this.concurrency + this.prefetch > 1000) {
      throw new RangeError(
        `concurrency must be at least 1, prefetch at least 0, and concurrency + prefetch at most 1000; ` +
          `got concurrency=${this.concurrency}, prefetch=${this.prefetch}`,
      );
    }
    this.tower = new ControlTower(options.target, options);
  }

  /** Sets the function that handles every task this worker pulls. */
  handle(handler: Handler): this {
    this.handler = handler;
    return this;
  }

  /**
   * Drains, then ends `run`: the server is told to grant no new leases, the tasks already running finish and are
   * settled, and then the stream closes.
   */
  stop(): void {
    if (this.draining) return;
    this.draining = true;
    void this.heartbeat();
    this.stopWhenIdle();
  }

  private stopWhenIdle(): void {
    if (this.running.size === 0) this.stopping.abort();
  }

  /** Pulls and runs tasks until `stop()`; rejects only on a refusal that reconnecting cannot cure. */
  async run(): Promise<void> {
    if (!this.handler) throw new Error("no handler: call worker.handle(fn) first");
    const heartbeat = setInterval(() => void this.heartbeat(), this.options.heartbeatMs ?? 5000);
    let delayMs = 100;
    try {
      while (!this.stopping.signal.aborted) {
        try {
          await this.pull();
          delayMs = 100;
        } catch (error) {
          if (!(error instanceof ControlTowerError) || !TRANSIENT.has(error.code)) throw error;
        }
        await sleep(delayMs * (0.5 + Math.random()), this.stopping.signal);
        delayMs = Math.min(delayMs * 2, 5000);
      }
    } finally {
      clearInterval(heartbeat);
      this.tower.close();
    }
  }

  private async pull(): Promise<void> {
    const stream = this.tower.workers.pullTasks(
      {
        workerId: this.options.workerId,
        operations: this.options.operations ?? [],
        maxInFlight: this.concurrency + this.prefetch,
      },
      this.tower.metadata(),
    );
    for await (const message of follow<PullTasksResponse>(stream, this.stopping.signal)) {
      const event = message.event;
      if (event?.$case === "assignment") void this.execute(event.value);
      else if (event?.$case === "cancelled") this.running.get(event.value.leaseId)?.cancel(event.value.reason);
    }
  }

  /** Waits for a slot; a slot freed while tasks wait goes straight to the first of them. */
  private async takeSlot(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.queued.push(resolve));
  }

  private freeSlot(): void {
    const next = this.queued.shift();
    if (next) next();
    else this.active--;
  }

  private async execute(assignment: TaskAssignment): Promise<void> {
    // Held from here: heartbeated while it waits, and a cancellation meanwhile means it never starts.
    const waiting = { cancelled: false, cancel: () => void (waiting.cancelled = true) };
    this.running.set(assignment.leaseId, waiting);
    await this.takeSlot();
    if (waiting.cancelled) {
      this.freeSlot();
      this.running.delete(assignment.leaseId);
      if (this.draining) this.stopWhenIdle();
      return;
    }
    try {
      await this.runTask(assignment);
    } finally {
      this.freeSlot();
    }
  }

  private async runTask(assignment: TaskAssignment): Promise<void> {
    let uploadAnswered!: (response?: PushTraceResponse) => void;
    const uploaded = new Promise<PushTraceResponse | undefined>((resolve) => (uploadAnswered = resolve));
    const upload = this.tower.workers.pushTrace(this.tower.metadata(), (error, response) =>
      uploadAnswered(error ? undefined : response),
    );
    // A failed upload is answered through the callback; lines written after it are dropped, never thrown.
    upload.on("error", () => undefined);
    const ctx = new TaskContext(assignment, upload);
    this.running.set(ctx.leaseId, ctx);
    try {
      let outcome: { result: { [key: string]: any } } | { error: string; retryable: boolean };
      try {
        outcome = { result: (await this.handler!(ctx)) ?? {} };
      } catch (error) {
        const retryable = error instanceof Retryable;
        const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        outcome = { error: retryable ? (error as Error).message : text, retryable };
      }
      // The log is on disk before the result is recorded, so a finished task never lacks the end of its log.
      ctx.finishLog();
      await uploaded;
      if (ctx.cancelled) return;
      if ("result" in outcome) {
        await this.tower.call(this.tower.workers.completeTask.bind(this.tower.workers), {
          leaseId: ctx.leaseId,
          result: outcome.result,
        });
      } else {
        await this.tower.call(this.tower.workers.failTask.bind(this.tower.workers), {
          leaseId: ctx.leaseId,
          error: outcome.error,
          retryable: outcome.retryable,
        });
      }
    } catch (error) {
      // A refused settle means the lease was lost or the task cancelled meanwhile: the server has decided already.
      // Anything else (the connection gone) leaves the lease to expire, and the task is delivered again.
      if (!(error instanceof ControlTowerError)) console.error(`control-tower worker: settling ${ctx.leaseId}:`, error);
    } finally {
      this.running.delete(ctx.leaseId);
      if (this.draining) this.stopWhenIdle();
    }
  }

  private async heartbeat(): Promise<void> {
    const leaseIds = [...this.running.keys()];
    if (leaseIds.length === 0 && !this.draining) return;
    try {
      const answer = await this.tower.call(this.tower.workers.heartbeat.bind(this.tower.workers), {
        workerId: this.options.workerId,
        leaseIds,
        draining: this.draining,
      });
      for (const lease of answer.cancelled) this.running.get(lease)?.cancel("cancelled");
      for (const lease of answer.lost) this.running.get(lease)?.cancel("lease lost");
    } catch {
      // A missed heartbeat is retried at the next tick; the lease timeout leaves room for several.
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}
