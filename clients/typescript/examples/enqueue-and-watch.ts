// Enqueue a task and follow it until it ends.
//
//   npm run build && node dist/examples/enqueue-and-watch.js 127.0.0.1:50051
import { ControlTower, TaskStatus } from "../src";

async function main() {
  const tower = new ControlTower(process.argv[2] ?? "127.0.0.1:50051");
  const stop = new AbortController();
  // Open the watch before enqueueing, so that no transition is missed.
  const events = await tower.watch({ operation: "ops" }, stop.signal);
  const task = await tower.enqueue({
    objective: "Summarise yesterday's deploys",
    operation: "ops",
    target: { repo: "acme/app" },
    requestedBy: { kind: "agent", id: "ts-example" },
    inputs: { since: "yesterday" },
  });
  console.log(`enqueued ${task.id}`);
  for await (const event of events) {
    if (event.task?.id !== task.id) continue;
    console.log(`${TaskStatus[event.toStatus]} ${event.note}`);
    if (event.toStatus >= TaskStatus.TASK_STATUS_COMPLETED) break;
  }
  stop.abort();
  tower.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
