// A real `control-tower serve` for the tests: on SQLite in a temp folder, or on the database named by
// CT_SERVER_DATABASE_URL (CI gives it a fresh PostgreSQL database).
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { ControlTower } from "../src";

const REPO_ROOT = path.resolve(__dirname, "..", "..", "..", "..");
export const BINARY = process.env.CONTROL_TOWER_BIN ?? path.join(REPO_ROOT, "target", "debug", "control-tower");

export interface RunningServer {
  target: string;
  traces: string;
  dir: string;
  stop(): Promise<void>;
}

export async function startServer(): Promise<RunningServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ct-ts-"));
  const target = `127.0.0.1:${await freePort()}`;
  const traces = path.join(dir, "traces");
  const log = fs.openSync(path.join(dir, "server.log"), "w");
  const child: ChildProcess = spawn(BINARY, ["serve"], {
    env: {
      ...process.env,
      JCT_LISTEN_ADDR: target,
      JCT_TRACE_ROOT: traces,
      DATABASE_URL: process.env.CT_SERVER_DATABASE_URL || `sqlite://${dir}/ct.db?mode=rwc`,
      JCT_ALLOWED_REPO_PREFIXES: "acme/",
      RUST_LOG: "warn",
    },
    stdio: ["ignore", log, log],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await waitUntilServing(target, child);
  return {
    target,
    traces,
    dir,
    async stop() {
      child.kill("SIGTERM");
      await exited;
      fs.closeSync(log);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function waitUntilServing(target: string, child: ChildProcess): Promise<void> {
  const tower = new ControlTower(target);
  try {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`control-tower serve exited with ${child.exitCode}`);
      try {
        await new Promise<void>((resolve, reject) =>
          tower.tasks.waitForReady(Date.now() + 500, (error) => (error ? reject(error) : resolve())),
        );
        return;
      } catch {
        // not listening yet
      }
    }
    throw new Error(`control-tower serve did not listen on ${target} within 30 s`);
  } finally {
    tower.close();
  }
}

/** Polls `probe` until it returns a value, or fails after `timeoutMs`. */
export async function waitFor<T>(probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("timed out waiting");
}

export function spec(objective: string, inputs: { [key: string]: any } = {}, repo = "acme/app") {
  return { objective, operation: "ops", target: { repo }, requestedBy: { kind: "agent", id: "ts-test" }, inputs };
}
