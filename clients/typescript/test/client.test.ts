// The typed client against a real server: enqueue, get, list, cancel, watch, audit, and errors with their codes.
import * as assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";

import { ControlTower, ControlTowerError, type TaskEvent, TaskStatus } from "../src";
import { type RunningServer, spec, startServer } from "./server";

describe("ControlTower client", () => {
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

  test("enqueues, gets, lists and cancels a task, and reads its audit trail", async () => {
    const task = await tower.enqueue(spec("Summarise the open incidents", { n: 3 }), { traceId: "ts-trace-1" });
    assert.equal(task.status, TaskStatus.TASK_STATUS_QUEUED);
    assert.equal(task.traceId, "ts-trace-1");
    assert.deepEqual(task.spec?.inputs, { n: 3 });

    const fetched = await tower.get(task.id);
    assert.equal(fetched.spec?.objective, "Summarise the open incidents");

    const queued: string[] = [];
    for await (const t of tower.list({ status: "queued", targetRepo: "acme/app" }, 1)) queued.push(t.id);
    assert.ok(queued.includes(task.id), "list pages through every queued task");

    const cancelled = await tower.cancel(task.id, "not needed");
    assert.equal(cancelled.status, TaskStatus.TASK_STATUS_CANCELLED);

    const actions: string[] = [];
    for await (const event of tower.auditEvents({ traceId: "ts-trace-1" })) actions.push(event.action);
    assert.deepEqual(actions, ["status_changed", "created"]);
  });

  test("a refused watch rejects with the server's reason", async () => {
    const events = await tower.watch({ cursor: "not-a-cursor" });
    await assert.rejects(events.next(), (error) => {
      assert.ok(error instanceof ControlTowerError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      return true;
    });
  });

  test("a repeated idempotency key returns the first task", async () => {
    const first = await tower.enqueueRequest({ ...spec("Rotate the keys"), idempotencyKey: "ts-rotate-1" });
    const again = await tower.enqueueRequest({ ...spec("Rotate the keys"), idempotencyKey: "ts-rotate-1" });
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.task?.id, first.task?.id);
  });

  test("enqueueMany reports each item on its own", async () => {
    const results = await tower.enqueueMany([spec("First of a batch"), spec("x"), spec("Third of a batch")]);
    assert.deepEqual(
      results.map((r) => r.outcome?.$case),
      ["enqueued", "error", "enqueued"],
    );
    const refused = results[1].outcome;
    assert.ok(refused?.$case === "error");
    assert.equal(refused.value.code, status.INVALID_ARGUMENT);
    assert.ok(refused.value.fieldViolations.some((v) => v.field.includes("objective")));
  });

  test("errors carry the gRPC code, the policy code and the invalid fields", async () => {
    await assert.rejects(tower.enqueue(spec("Deploy to a foreign repository", {}, "evil/app")), (error) => {
      assert.ok(error instanceof ControlTowerError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.reason, "REPO_NOT_ALLOWED");
      return true;
    });
    await assert.rejects(tower.enqueue(spec("x")), (error) => {
      assert.ok(error instanceof ControlTowerError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.ok(error.fieldViolations.some((v) => v.field.includes("objective")), JSON.stringify(error));
      return true;
    });
    await assert.rejects(tower.get("01a1fbe9-6ef0-703e-8741-2f40065126b0"), (error) => {
      assert.ok(error instanceof ControlTowerError);
      assert.equal(error.code, status.NOT_FOUND);
      return true;
    });
  });

  test("watch yields transitions as they happen and stops cleanly", async () => {
    const stop = new AbortController();
    const timeout = setTimeout(() => stop.abort(), 20_000);
    const events = await tower.watch({ operation: "ops" }, stop.signal);
    const mine = (await tower.enqueue(spec("Watch this task"))).id;
    await tower.cancel(mine);
    const seen: TaskEvent[] = [];
    for await (const event of events) {
      seen.push(event);
      if (seen.filter((e) => e.task?.id === mine).length === 2) break;
    }
    clearTimeout(timeout);
    assert.deepEqual(
      seen.filter((e) => e.task?.id === mine).map((e) => e.toStatus),
      [TaskStatus.TASK_STATUS_QUEUED, TaskStatus.TASK_STATUS_CANCELLED],
    );
  });
});
