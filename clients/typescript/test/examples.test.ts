// The examples as their users run them: the agent as its own process, and the enqueue-and-watch script beside it.
import * as assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { type RunningServer, startServer } from "./server";

const EXAMPLES = path.resolve(__dirname, "..", "examples");

describe("examples", () => {
  let server: RunningServer;

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  test("enqueue-and-watch follows a task that the example agent runs", async () => {
    const agent = spawn(process.execPath, [path.join(EXAMPLES, "agent.js"), server.target], { stdio: "inherit" });
    const agentExited = new Promise((resolve) => agent.once("exit", resolve));
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [path.join(EXAMPLES, "enqueue-and-watch.js"), server.target],
        { timeout: 30_000 },
      );
      const lines = stdout.trim().split("\n");
      assert.match(lines[0], /^enqueued [0-9a-f-]{36}$/);
      assert.deepEqual(
        lines.slice(1).map((line) => line.split(" ")[0]),
        ["TASK_STATUS_QUEUED", "TASK_STATUS_RUNNING", "TASK_STATUS_COMPLETED"],
      );
    } finally {
      agent.kill("SIGTERM");
      assert.equal(await agentExited, 0, "the agent stops cleanly on SIGTERM");
    }
  });
});
