"""The Python client and worker helper against a real `control-tower serve`: on SQLite in a temp folder, or on the
database named by CT_SERVER_DATABASE_URL (CI gives it a fresh PostgreSQL database)."""

import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from control_tower_client import ControlTower, ControlTowerError, TaskStatus, Worker

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
BINARY = os.environ.get("CONTROL_TOWER_BIN", str(REPO_ROOT / "target" / "debug" / "control-tower"))


def spec(objective, repo="acme/app", **inputs):
    return {"objective": objective, "operation": "ops", "target": {"repo": repo},
            "requested_by": {"kind": "agent", "id": "py-test"}, "inputs": inputs}


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cls.target = f"127.0.0.1:{port}"
        cls.traces = pathlib.Path(cls.dir.name) / "traces"
        env = dict(os.environ, JCT_LISTEN_ADDR=cls.target, JCT_TRACE_ROOT=str(cls.traces),
                   DATABASE_URL=os.environ.get("CT_SERVER_DATABASE_URL") or f"sqlite://{cls.dir.name}/ct.db?mode=rwc",
                   JCT_ALLOWED_REPO_PREFIXES="acme/",
                   RUST_LOG="warn")
        cls.log = open(pathlib.Path(cls.dir.name) / "server.log", "w")
        cls.server = subprocess.Popen([BINARY, "serve"], env=env, stdout=cls.log, stderr=cls.log)
        grpc.channel_ready_future(grpc.insecure_channel(cls.target)).result(timeout=30)
        cls.tower = ControlTower(cls.target)

    @classmethod
    def tearDownClass(cls):
        cls.tower.close()
        cls.server.terminate()
        cls.server.wait(timeout=30)
        cls.log.close()
        cls.dir.cleanup()


class ClientTest(ServerTest):
    def test_enqueue_get_list_and_cancel(self):
        task = self.tower.enqueue(spec("Summarise the open incidents", n=3), trace_id="py-trace-1")
        self.assertEqual(task.status, TaskStatus.TASK_STATUS_QUEUED)
        self.assertEqual(task.trace_id, "py-trace-1")
        self.assertEqual(self.tower.get(task.id).spec.objective, "Summarise the open incidents")
        self.assertIn(task.id, [t.id for t in self.tower.list(status="queued", target_repo="acme/app")])
        cancelled = self.tower.cancel(task.id, reason="not needed")
        self.assertEqual(cancelled.status, TaskStatus.TASK_STATUS_CANCELLED)
        actions = [e.action for e in self.tower.audit_events(trace_id="py-trace-1")]
        self.assertEqual(actions, ["status_changed", "created"])

    def test_errors_carry_the_grpc_code_and_the_policy_code(self):
        with self.assertRaises(ControlTowerError) as refused:
            self.tower.enqueue(spec("Deploy to a foreign repository", repo="evil/app"))
        self.assertEqual(refused.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(refused.exception.reason, "REPO_NOT_ALLOWED")
        with self.assertRaises(ControlTowerError) as invalid:
            self.tower.enqueue(spec("x"))
        self.assertEqual(invalid.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("objective", [field for field, _ in invalid.exception.field_violations])
        with self.assertRaises(ControlTowerError) as missing:
            self.tower.get("01a1fbe9-6ef0-703e-8741-2f40065126b0")
        self.assertEqual(missing.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_watch_yields_transitions_as_they_happen(self):
        events = []
        stream = self.tower.watch(operation="ops", timeout=20)

        def follow():
            for event in stream:
                events.append(event)
                if len(events) == 2:
                    return

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        time.sleep(0.5)  # the stream starts with the transitions from now on
        task = self.tower.enqueue(spec("Watch this task"))
        self.tower.cancel(task.id)
        follower.join(timeout=20)
        stream.close()
        mine = [e for e in events if e.task.id == task.id]
        self.assertEqual([e.to_status for e in mine],
                         [TaskStatus.TASK_STATUS_QUEUED, TaskStatus.TASK_STATUS_CANCELLED])


class WorkerTest(ServerTest):
    def test_a_decorated_function_runs_tasks_streams_its_log_and_completes_them(self):
        worker = Worker(self.target, "py-worker-1", concurrency=3, heartbeat_seconds=0.5)

        @worker.task
        def handle(ctx):
            ctx.log(f"doubling {int(ctx.inputs['n'])}")
            return {"doubled": int(ctx.inputs["n"]) * 2}

        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        ids = [self.tower.enqueue(spec(f"Double the number {n}", n=n)).id for n in range(5)]
        done = [wait_for(lambda i=i: (t := self.tower.get(i)).status == TaskStatus.TASK_STATUS_COMPLETED and t)
                for i in ids]
        worker.stop()
        runner.join(timeout=20)
        for n, task in enumerate(done):
            self.assertEqual(task.worker_id, "py-worker-1")
            self.assertEqual(task.result["doubled"], n * 2)
            log = wait_for(lambda t=task: (self.traces / t.id / "log.txt").is_file() and
                           (self.traces / t.id / "log.txt").read_text())
            self.assertEqual(log, f"doubling {n}\n")

    def test_failures_and_cancellation_reach_the_handler_and_the_server(self):
        worker = Worker(self.target, "py-worker-2", concurrency=2, heartbeat_seconds=0.5)
        started = threading.Event()

        @worker.task
        def handle(ctx):
            if ctx.inputs.get("fail"):
                raise ValueError("bad input")
            started.set()
            self.assertTrue(ctx.cancelled.wait(20), "the handler learns of the cancellation")
            return {"late": True}

        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        failing = self.tower.enqueue(spec("This one fails", fail=True))
        failed = wait_for(lambda: (t := self.tower.get(failing.id)).status == TaskStatus.TASK_STATUS_FAILED and t)
        self.assertIn("ValueError: bad input", failed.error)
        waiting = self.tower.enqueue(spec("This one waits to be cancelled"))
        self.assertTrue(started.wait(20))
        self.tower.cancel(waiting.id, reason="changed our mind")
        time.sleep(1)
        worker.stop()
        runner.join(timeout=20)
        self.assertEqual(self.tower.get(waiting.id).status, TaskStatus.TASK_STATUS_CANCELLED)

    def test_stop_drains_the_task_in_hand_before_run_ends(self):
        worker = Worker(self.target, "py-worker-3", concurrency=1, heartbeat_seconds=60)
        began, release = threading.Event(), threading.Event()

        @worker.task
        def handle(ctx):
            began.set()
            release.wait(20)
            return {"finished": True}

        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        task = self.tower.enqueue(spec("Finish me before stopping"))
        self.assertTrue(began.wait(20))
        stopper = threading.Thread(target=worker.stop)
        stopper.start()
        time.sleep(0.2)
        self.assertTrue(runner.is_alive(), "run waits for the task in hand")
        release.set()
        stopper.join(timeout=20)
        runner.join(timeout=20)
        self.assertFalse(runner.is_alive())
        finished = self.tower.get(task.id)
        self.assertEqual(finished.status, TaskStatus.TASK_STATUS_COMPLETED)
        self.assertEqual(finished.result["finished"], True)

    def test_prefetched_tasks_wait_leased_in_order_and_a_cancelled_one_never_starts(self):
        worker = Worker(self.target, "py-worker-4", concurrency=1, prefetch=2, heartbeat_seconds=0.5)
        started, release = [], threading.Semaphore(0)

        @worker.task
        def handle(ctx):
            started.append(ctx.task.spec.objective)
            release.acquire(timeout=20)
            return {}

        ids = [self.tower.enqueue(spec(f"Prefetched task {n}")).id for n in range(4)]
        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        running = lambda: [i for i in ids if self.tower.get(i).status == TaskStatus.TASK_STATUS_RUNNING]
        wait_for(lambda: len(running()) == 3)
        time.sleep(0.3)
        self.assertEqual(started, ["Prefetched task 0"], "one handler at a time; the prefetched two wait")
        self.tower.cancel(ids[1], reason="not needed")
        time.sleep(0.3)  # the withdrawal reaches the worker over its stream
        for _ in ids:
            release.release()
        wait_for(lambda: all(self.tower.get(i).status in (TaskStatus.TASK_STATUS_COMPLETED,
                                                          TaskStatus.TASK_STATUS_CANCELLED) for i in ids))
        worker.stop()
        runner.join(timeout=20)
        self.assertEqual(started, ["Prefetched task 0", "Prefetched task 2", "Prefetched task 3"])
        self.assertEqual(self.tower.get(ids[1]).status, TaskStatus.TASK_STATUS_CANCELLED)

    def test_concurrency_and_prefetch_are_checked(self):
        for concurrency, prefetch in [(0, 0), (1, -1), (600, 401)]:
            with self.assertRaises(ValueError):
                Worker(self.target, "py-worker-5", concurrency=concurrency, prefetch=prefetch)


if __name__ == "__main__":
    unittest.main()
