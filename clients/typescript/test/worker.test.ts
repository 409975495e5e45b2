// The worker helper against a real server: it runs tasks, streams their logs, fails them, and honours cancellation.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";

import { ControlTower, Retryable, TaskStatus, Worker } from "../src";
import { type RunningServer, spec, startServer, waitFor } from "./server";

describe("Worker", () => {
  let server: RunningServer;
  let tower: ControlTower;

  before(async () => {
    server = await startServer();
    tower = new ControlTower(server.target);
  });
  after(async () => {
    tower.close();
    await server.stop();
  });

  const settled = (id: string, want: TaskStatus) =>
    waitFor(async () => {
      const task = await tower.get(id);
      return task.status === want && task;
    });

  test("an async function runs tasks, streams its log and completes them", async () => {
    const worker = new Worker({ target: server.target, workerId: "ts-worker-1", concurrency: 3, heartbeatMs: 500 });
    worker.handle(async (ctx) => {
      ctx.log(`doubling ${ctx.inputs.n}`);
      return { doubled: ctx.inputs.n * 2 };
    });
    const running = worker.run();
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push((await tower.enqueue(spec(`Double the number ${n}`, { n }))).id);
    const done = await Promise.all(ids.map((id) => settled(id, TaskStatus.TASK_STATUS_COMPLETED)));
    worker.stop();
    await running;
    done.forEach((task, n) => {
      assert.equal(task.workerId, "ts-worker-1");
      assert.deepEqual(task.result, { doubled: n * 2 });
      const log = fs.readFileSync(path.join(server.traces, task.id, "log.txt"), "utf8");
      assert.equal(log, `doubling ${n}\n`);
    });
  });

  test("thrown errors fail the task, Retryable sends it back, cancellation aborts the handler", async () => {
    const worker = new Worker({ target: server.target, workerId: "ts-worker-2", concurrency: 2, heartbeatMs: 300 });
    let aborted: () => void;
    const handlerSawAbort = new Promise<void>((resolve) => (aborted = resolve));
    let waitingStarted: () => void;
    const started = new Promise<void>((resolve) => (waitingStarted = resolve));
    worker.handle(async (ctx) => {
      if (ctx.inputs.fail) throw new TypeError("bad input");
      if (ctx.inputs.retry) {
        if (ctx.attempt === 1) throw new Retryable("try again");
        return { attempt: ctx.attempt };
      }
      waitingStarted();
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      aborted();
      return { late: true };
    });
    const running = worker.run();

    const failing = await tower.enqueue(spec("This one fails", { fail: true }));
    const failed = await settled(failing.id, TaskStatus.TASK_STATUS_FAILED);
    assert.match(failed.error, /TypeError: bad input/);

    // The server's retry backoff starts at about a second.
    const retried = await tower.enqueue({ ...spec("This one succeeds on its second attempt", { retry: true }), maxAttempts: 3 });
    const second = await settled(retried.id, TaskStatus.TASK_STATUS_COMPLETED);
    assert.deepEqual(second.result, { attempt: 2 });

    const waiting = await tower.enqueue(spec("This one waits to be cancelled"));
    await started;
    await tower.cancel(waiting.id, "changed our mind");
    await handlerSawAbort;
    worker.stop();
    await running;
    assert.equal((await tower.get(waiting.id)).status, TaskStatus.TASK_STATUS_CANCELLED);
  });

  test("stop drains: the task in hand is finished and settled before run ends", async () => {
    const worker = new Worker({ target: server.target, workerId: "ts-worker-3", concurrency: 1, heartbeatMs: 60_000 });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let began!: (id: string) => void;
    const inHand = new Promise<string>((resolve) => (began = resolve));
    worker.handle(async (ctx) => {
      began(ctx.task.id);
      await released;
      return { finished: true };
    });
    const running = worker.run();
    const first = await tower.enqueue(spec("Finish me before stopping", { drain: 1 }));
    assert.equal(await inHand, first.id);
    worker.stop();
    release();
    await running;
    assert.equal((await tower.get(first.id)).status, TaskStatus.TASK_STATUS_COMPLETED);
  });

  test("prefetched tasks wait leased, start in order one slot at a time, and a cancelled one never starts", async () => {
    const worker = new Worker({ target: server.target, workerId: "ts-worker-4", concurrency: 1, prefetch: 2 });
    const started: string[] = [];
    const releases: (() => void)[] = [];
    worker.handle(async (ctx) => {
      started.push(ctx.task.spec!.objective);
      await new Promise<void>((resolve) => releases.push(resolve));
      return {};
    });
    const ids: string[] = [];
    for (let n = 0; n < 4; n++) ids.push((await tower.enqueue(spec(`Prefetched task ${n}`))).id);
    const running = worker.run();
    const statuses = async () => Promise.all(ids.map(async (id) => (await tower.get(id)).status));
    await waitFor(async () => (await statuses()).filter((s) => s === TaskStatus.TASK_STATUS_RUNNING).length === 3);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(started, ["Prefetched task 0"], "one handler at a time; the prefetched two wait");
    await tower.cancel(ids[1], "not needed");
    await new Promise((resolve) => setTimeout(resolve, 300)); // the withdrawal reaches the worker over its stream
    const finishing = setInterval(() => releases.shift()?.(), 20);
    await waitFor(async () =>
      (await statuses()).every((s) => s === TaskStatus.TASK_STATUS_COMPLETED || s === TaskStatus.TASK_STATUS_CANCELLED),
    );
    clearInterval(finishing);
    worker.stop();
    await running;
    assert.deepEqual(started, ["Prefetched task 0", "Prefetched task 2", "Prefetched task 3"]);
    assert.equal((await tower.get(ids[1])).status, TaskStatus.TASK_STATUS_CANCELLED);
  });

  test("concurrency and prefetch are checked", () => {
    for (const [concurrency, prefetch] of [[0, 0], [1, -1], [600, 401], [1.5, 0]]) {
      assert.throws(() => new Worker({ target: server.target, workerId: "ts-worker-5", concurrency, prefetch }), RangeError);
    }
  });

  test("a refused worker id ends run with the server's reason", async () => {
    const worker = new Worker({ target: server.target, workerId: "not a valid id!" });
    worker.handle(() => ({}));
    await assert.rejects(worker.run(), /INVALID_ARGUMENT/);
  });
});
