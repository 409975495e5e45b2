// A complete Control Tower agent: run it beside a server, then enqueue tasks with operation "ops".
//
//   npm run build && node dist/examples/agent.js 127.0.0.1:50051
import { Worker } from "../src";

const worker = new Worker({ target: process.argv[2] ?? "127.0.0.1:50051", workerId: "example-ts-agent", concurrency: 4 });

worker.handle(async (ctx) => {
  ctx.log(`objective: ${ctx.task.spec?.objective}`);
  return { echo: ctx.inputs, attempt: ctx.attempt };
});

process.once("SIGTERM", () => worker.stop());
process.once("SIGINT", () => worker.stop());
worker.run().catch((error) => {
  console.error(error);
  process.exit(1);
});
