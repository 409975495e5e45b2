// Runs every recipe of the README's "Recipes: grpcurl and the CLI" section against a real server and checks what it
// prints, so that the recipes cannot go stale.
//
// A recipe is a ```sh block after a `<!-- recipe: NAME/TOOL -->` marker; a `<!-- recipe-file: NAME -->` block is
// written to a file of that name in the recipes' working directory. Each block runs in bash as written, with the
// documented address replaced by the test server's. grpcurl is used when it is on the PATH; otherwise a shell function
// maps the grpcurl flags the recipes use onto `buf curl` (from this package's dev dependencies), which speaks the
// same gRPC with server reflection.
import * as assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { ControlTower, TaskStatus, Worker } from "../src";
import { BINARY, type RunningServer, spec, startServer, waitFor } from "./server";

const README = path.resolve(__dirname, "..", "..", "..", "..", "README.md");
const BUF_BIN = path.resolve(__dirname, "..", "..", "node_modules", ".bin");
const DOCUMENTED_ADDRESS = "127.0.0.1:50051";

const GRPCURL_VIA_BUF = path.resolve(__dirname, "..", "..", "test", "grpcurl-via-buf.sh");

interface Recipes {
  blocks: Map<string, string>;
  files: Map<string, string>;
}

function readRecipes(): Recipes {
  const text = fs.readFileSync(README, "utf8");
  const blocks = new Map<string, string>();
  const files = new Map<string, string>();
  const marker = /<!-- recipe(-file)?: (\S+) -->\n```\w*\n([\s\S]*?)```/g;
  for (const [, isFile, name, body] of text.matchAll(marker)) (isFile ? files : blocks).set(name, body);
  return { blocks, files };
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

describe("README recipes", () => {
  const recipes = readRecipes();
  const ran = new Set<string>();
  let server: RunningServer;
  let tower: ControlTower;
  let worker: Worker;
  let working: Promise<void>;
  let workdir: string;

  before(async () => {
    server = await startServer();
    tower = new ControlTower(server.target);
    // A worker for "ops" tasks, so that the recipes find traces and complete transitions.
    worker = new Worker({ target: server.target, workerId: "recipe-worker", operations: ["ops"], concurrency: 2 });
    worker.handle((ctx) => {
      ctx.log(`rotating ${ctx.inputs.environment}`);
      return { rotated: true };
    });
    working = worker.run();
    workdir = fs.mkdtempSync(path.join(server.dir, "recipes-"));
    for (const [name, body] of recipes.files) fs.writeFileSync(path.join(workdir, name), body);
  });
  after(async () => {
    worker.stop();
    await working;
    tower.close();
    await server.stop();
  });

  function environment(extra: { [key: string]: string }) {
    const PATH = [path.dirname(BINARY), BUF_BIN, process.env.PATH].join(path.delimiter);
    return { ...process.env, PATH, JCT_SERVER: `http://${server.target}`, ...extra };
  }

  function script(name: string): string {
    const body = recipes.blocks.get(name);
    assert.ok(body, `the README has no recipe ${name}`);
    ran.add(name);
    const prelude = `command -v grpcurl >/dev/null || source "${GRPCURL_VIA_BUF}"`;
    return `set -euo pipefail\n${prelude}\n${body.replaceAll(DOCUMENTED_ADDRESS, server.target)}`;
  }

  /** Runs a recipe to its end and returns what it printed. */
  async function run(name: string, env: { [key: string]: string } = {}): Promise<string> {
    try {
      const { stdout } = await promisify(execFile)("bash", ["-c", script(name)], {
        cwd: workdir,
        env: environment(env),
        timeout: 30_000,
      });
      return stdout;
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string };
      assert.fail(`recipe ${name} failed: ${String(error)}\n${failed.stdout ?? ""}${failed.stderr ?? ""}`);
    }
  }

  /** Starts a recipe that runs until stopped (a watch); `output()` is what it has printed so far. */
  function start(name: string): { output: () => string; stop: () => void } {
    let printed = "";
    const child: ChildProcess = spawn("bash", ["-c", script(name)], {
      cwd: workdir,
      env: environment({}),
      detached: true, // its own process group, so that stopping it also stops the client it runs
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.stdout!.on("data", (data) => (printed += data));
    return { output: () => printed, stop: () => process.kill(-child.pid!, "SIGTERM") };
  }

  const completed = (id: string) =>
    waitFor(async () => (await tower.get(id)).status === TaskStatus.TASK_STATUS_COMPLETED);

  test("every recipe does what the README says", async () => {
    const health = await run("health/grpcurl");
    assert.match(health, /"status": "SERVING"/);
    assert.match(health, /^controltower\.v1\.TaskService$/m);

    const watches = [start("watch/grpcurl"), start("watch/cli")];
    try {
      // Wait until both watches are following: each has printed a transition of a task made after it started.
      await waitFor(async () => {
        // A "docs" task, which the worker here does not take, so that it is still queued when it is cancelled.
        const probe = await tower.enqueue({ ...spec("Probe the watches", {}, "acme/app"), operation: "docs" });
        await tower.cancel(probe.id);
        await new Promise((resolve) => setTimeout(resolve, 200));
        return watches.every((w) => w.output().includes(probe.id));
      });

      const byGrpcurl = await run("enqueue/grpcurl");
      assert.match(byGrpcurl, /"status": "TASK_STATUS_QUEUED"/);
      assert.match(byGrpcurl, /"traceId": "rotate-42"/);
      const first = byGrpcurl.match(UUID)![0];
      const byCli = await run("enqueue/cli");
      assert.match(byCli, /queued/);
      const second = byCli.match(UUID)![0];
      await completed(first);
      await completed(second);

      const trace = await run("trace/grpcurl", { TASK_ID: first });
      assert.match(trace, /"status": "TASK_STATUS_COMPLETED"/);
      assert.match(trace, /"workerId": "recipe-worker"/);
      const folder = trace.match(/"tracePath": "file:\/\/([^"]+)"/)![1];
      assert.equal(path.basename(folder), first);
      assert.equal(fs.readFileSync(path.join(folder, "log.txt"), "utf8"), "rotating staging\n");
      const traceCli = await run("trace/cli", { TASK_ID: second });
      assert.match(traceCli, /^status +completed$/m);
      assert.match(traceCli, new RegExp(`^trace_path +file://.*/${second}$`, "m"));

      const audit = await run("audit/grpcurl");
      for (const id of [first, second]) {
        const entries = audit.split(`"entityId": "${id}"`).length - 1;
        assert.equal(entries, 3, "created, then running, then completed");
      }
      assert.match(audit, /"actorId": "recipe-worker"/);
      const auditCli = await run("audit/cli");
      assert.equal(auditCli.trim().split("\n").length, 1 + 6, "a header and six entries");

      await waitFor(async () => watches[0].output().includes(`"id": "${first}"`) && /TASK_STATUS_COMPLETED/.test(watches[0].output()));
      await waitFor(async () =>
        watches[1].output().split("\n").some((line) => line.includes(second) && line.includes("completed")),
      );
    } finally {
      watches.forEach((w) => w.stop());
    }

    for (const tool of ["grpcurl", "cli"]) {
      // A "docs" task stays queued: the worker here only takes "ops".
      const waiting = await tower.enqueue({ ...spec("Write the rotation runbook"), operation: "docs" });
      const answer = await run(`cancel/${tool}`, { TASK_ID: waiting.id });
      assert.match(answer, tool === "grpcurl" ? /"status": "TASK_STATUS_CANCELLED"/ : /cancelled/);
      assert.equal((await tower.get(waiting.id)).status, TaskStatus.TASK_STATUS_CANCELLED);
    }

    assert.deepEqual([...recipes.blocks.keys()].filter((name) => !ran.has(name)), [], "every recipe was run");
  });
});
