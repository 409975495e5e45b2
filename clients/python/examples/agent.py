"""A complete Control Tower agent: run it beside a server, then enqueue tasks with operation "ops".

    python examples/agent.py 127.0.0.1:50051
"""

import sys

from control_tower_client import Worker

worker = Worker(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051", worker_id="example-agent", concurrency=4)


@worker.task
def handle(ctx):
    ctx.log(f"objective: {ctx.task.spec.objective}")
    return {"echo": ctx.inputs, "attempt": ctx.attempt}


if __name__ == "__main__":
    worker.run()
