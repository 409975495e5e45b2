"""Run a Python function as a Control Tower worker.

    worker = Worker("127.0.0.1:50051", worker_id="py-agent-1", concurrency=4)

    @worker.task
    def handle(ctx):
        ctx.log(f"working on {ctx.task.spec.objective}")
        return {"answer": 42}          # completes the task with this result

    worker.run()                         # until stop() or Ctrl-C

The worker pulls tasks over one PullTasks stream (``concurrency`` run at once; with ``prefetch=N``, N more are leased
ahead and wait in the worker, in arrival order, so that a finished task's thread takes the next one at once), heartbeats
the leases it holds, streams each task's ``ctx.log`` lines into its ``log.txt`` while it runs, completes it with the function's
result (a dict) or fails it with the exception (``Retryable`` goes back to the queue), reconnects with backoff when
the server goes away, and sets ``ctx.cancelled`` when the task is cancelled.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, Optional

import grpc
from google.protobuf import json_format, struct_pb2

from ._generated.controltower.v1 import tasks_pb2, workers_pb2
from .client import ControlTower
from .errors import ControlTowerError


# The most tasks one PullTasks stream may hold (the server's limit on `max_in_flight`).
MAX_IN_FLIGHT = 1000


class Retryable(Exception):
    """Raise from a handler to fail the task retryably (it goes back to the queue until its attempts run out)."""


class TaskContext:
    """What a handler gets: the task, its inputs as a dict, a log, and whether it was cancelled."""

    def __init__(self, task: tasks_pb2.Task, lease_id: str, attempt: int):
        self.task = task
        self.lease_id = lease_id
        self.attempt = attempt
        self.inputs: Dict[str, Any] = json_format.MessageToDict(task.spec.inputs)
        self.cancelled = threading.Event()
        self._chunks: "queue.Queue[Optional[workers_pb2.TraceChunk]]" = queue.Queue()
        self._offset = 0

    def log(self, line: str) -> None:
        """Appends a line to the task's log.txt (streamed to the server as the task runs)."""
        data = (line.rstrip("\n") + "\n").encode()
        self._chunks.put(workers_pb2.TraceChunk(lease_id=self.lease_id, file="log.txt", offset=self._offset, data=data))
        self._offset += len(data)

    def _upload(self) -> Iterator[workers_pb2.TraceChunk]:
        while (chunk := self._chunks.get()) is not None:
            yield chunk

    def _finish_log(self) -> None:
        self._chunks.put(workers_pb2.TraceChunk(lease_id=self.lease_id, file="log.txt", offset=self._offset, eof=True))
        self._chunks.put(None)


Handler = Callable[[TaskContext], Optional[dict]]


class Worker:
    def __init__(self, target: str, worker_id: str, *, operations=(), concurrency: int = 4, prefetch: int = 0,
                 token: Optional[str] = None, heartbeat_seconds: float = 5.0):
        if concurrency < 1 or prefetch < 0 or concurrency + prefetch > MAX_IN_FLIGHT:
            raise ValueError(f"concurrency must be at least 1, prefetch at least 0, and concurrency + prefetch at "
                             f"most {MAX_IN_FLIGHT}; got concurrency={concurrency}, prefetch={prefetch}")
        self.tower = ControlTower(target, token=token)
        self.worker_id = worker_id
        self.operations = list(operations)
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.heartbeat_seconds = heartbeat_seconds
        self._handler: Optional[Handler] = None
        self._running: Dict[str, TaskContext] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._draining = False
        self._stream = None

    def task(self, handler: Handler) -> Handler:
        """Decorator: the function that handles every task this worker pulls."""
        self._handler = handler
        return handler

    def stop(self) -> None:
        """Drains, then ends ``run``: the server is told to grant no new leases, the tasks already running finish and
        are settled, and then the stream closes."""
        if self._draining:
            return
        self._draining = True
        self._heartbeat()
        self._stop_when_idle()

    def _stop_when_idle(self) -> None:
        with self._lock:
            if self._running:
                return
        self._stop.set()
        if self._stream is not None:
            self._stream.cancel()

    def run(self) -> None:
        if self._handler is None:
            raise ValueError("no handler: decorate a function with @worker.task")
        heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
        heartbeat.start()
        delay = 0.1
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            while not self._stop.is_set():
                try:
                    self._pull(pool)
                    delay = 0.1
                except grpc.RpcError as error:
                    if self._stop.is_set():
                        break
                    if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                            grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                        raise ControlTowerError.from_rpc_error(error) from None
                self._stop.wait(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)

    def _pull(self, pool: ThreadPoolExecutor) -> None:
        request = workers_pb2.PullTasksRequest(worker_id=self.worker_id, operations=self.operations,
                                               max_in_flight=self.concurrency + self.prefetch)
        self._stream = self.tower.workers.PullTasks(request, metadata=self.tower._metadata)
        for message in self._stream:
            event = message.WhichOneof("event")
            if event == "assignment":
                a = message.assignment
                ctx = TaskContext(a.task, a.lease_id, a.attempt)
                # Held (and heartbeated) from here; the pool runs `concurrency` at once, the rest wait in its queue.
                with self._lock:
                    self._running[a.lease_id] = ctx
                pool.submit(self._execute, ctx)
            elif event == "cancelled":
                self._cancelled(message.cancelled.lease_id)

    def _cancelled(self, lease_id: str) -> None:
        with self._lock:
            ctx = self._running.get(lease_id)
        if ctx is not None:
            ctx.cancelled.set()

    def _execute(self, ctx: TaskContext) -> None:
        if ctx.cancelled.is_set():
            # Withdrawn while it waited for a thread: it never starts, and the server has settled it already.
            self._release(ctx)
            return
        upload = threading.Thread(target=self._push_log, args=(ctx,), daemon=True)
        upload.start()
        try:
            result = self._handler(ctx)  # type: ignore[misc]
            outcome = ("complete", result or {})
        except Retryable as error:
            outcome = ("fail", (str(error) or "retryable failure", True))
        except Exception as error:  # noqa: BLE001 - any handler failure fails the task
            outcome = ("fail", (f"{type(error).__name__}: {error}", False))
        ctx._finish_log()
        upload.join()
        try:
            if ctx.cancelled.is_set():
                return
            kind, value = outcome
            if kind == "complete":
                result = struct_pb2.Struct()
                result.update(value)
                self.tower.call(self.tower.workers.CompleteTask,
                                workers_pb2.CompleteTaskRequest(lease_id=ctx.lease_id, result=result))
            else:
                error, retryable = value
                self.tower.call(self.tower.workers.FailTask,
                                workers_pb2.FailTaskRequest(lease_id=ctx.lease_id, error=error, retryable=retryable))
        except ControlTowerError:
            pass  # the lease was lost or the task cancelled meanwhile: the server has decided already
        finally:
            self._release(ctx)

    def _release(self, ctx: TaskContext) -> None:
        with self._lock:
            self._running.pop(ctx.lease_id, None)
        if self._draining:
            self._stop_when_idle()

    def _push_log(self, ctx: TaskContext) -> None:
        try:
            self.tower.workers.PushTrace(ctx._upload(), metadata=self.tower._metadata)
        except grpc.RpcError:
            # Drain what the handler still logs, so that it never blocks on a dead upload.
            while ctx._chunks.get() is not None:
                pass

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self._heartbeat()

    def _heartbeat(self) -> None:
        with self._lock:
            leases = list(self._running)
        if not leases and not self._draining:
            return
        request = workers_pb2.HeartbeatRequest(worker_id=self.worker_id, lease_ids=leases, draining=self._draining)
        try:
            answer = self.tower.call(self.tower.workers.Heartbeat, request, timeout=5)
        except ControlTowerError:
            return  # retried at the next tick; the lease timeout leaves room for several
        for lease in [*answer.cancelled, *answer.lost]:
            self._cancelled(lease)
