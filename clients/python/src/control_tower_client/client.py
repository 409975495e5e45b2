"""The typed layer over the generated stubs: ``ControlTower(target, token=...)``."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

import grpc
from google.protobuf import json_format

from ._generated.controltower.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    cwom_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2_grpc,
)
from .errors import ControlTowerError

TaskStatus = tasks_pb2.TaskStatus


def _status(value: Optional[str]) -> int:
    """``"running"`` -> TASK_STATUS_RUNNING; None -> unspecified (no filter)."""
    return TaskStatus.Value(f"TASK_STATUS_{value.upper()}") if value else 0


class ControlTower:
    """A connection to a Control Tower server.

    >>> tower = ControlTower("127.0.0.1:50051")
    >>> task = tower.enqueue({"objective": "Say hello", "operation": "ops", "target": {"repo": "acme/app"},
    ...                       "requested_by": {"kind": "agent", "id": "me"}})
    >>> tower.get(task.id).status == TaskStatus.TASK_STATUS_QUEUED
    """

    def __init__(self, target: str, token: Optional[str] = None, channel: Optional[grpc.Channel] = None):
        self._channel = channel or grpc.insecure_channel(target.removeprefix("http://"))
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self.tasks = tasks_pb2_grpc.TaskServiceStub(self._channel)
        self.workers = workers_pb2_grpc.WorkerServiceStub(self._channel)
        self.cwom = cwom_pb2_grpc.CwomServiceStub(self._channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ControlTower":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def call(self, method, request, trace_id: Optional[str] = None, **kwargs):
        """Calls any RPC with this client's credentials; errors become ControlTowerError."""
        metadata = list(self._metadata)
        if trace_id:
            metadata.append(("x-trace-id", trace_id))
        try:
            return method(request, metadata=metadata, **kwargs)
        except grpc.RpcError as error:
            raise ControlTowerError.from_rpc_error(error) from None

    # Tasks.

    def enqueue(self, spec: Mapping[str, Any] | tasks_pb2.TaskSpec, *, trace_id: Optional[str] = None,
                create_cwom: bool = False) -> tasks_pb2.Task:
        """Enqueues a TaskSpec (a dict in the proto JSON form, or a message); returns the task."""
        if not isinstance(spec, tasks_pb2.TaskSpec):
            spec = json_format.ParseDict(dict(spec), tasks_pb2.TaskSpec())
        request = tasks_pb2.EnqueueTaskRequest(spec=spec, create_cwom=create_cwom)
        return self.call(self.tasks.EnqueueTask, request, trace_id).task

    def get(self, task_id: str) -> tasks_pb2.Task:
        return self.call(self.tasks.GetTask, tasks_pb2.GetTaskRequest(id=task_id))

    def list(self, *, status: Optional[str] = None, operation: str = "", requested_by_kind: str = "",
             target_repo: str = "", worker_id: str = "", page_size: int = 100) -> Iterator[tasks_pb2.Task]:
        """Every matching task, newest first, fetched page by page."""
        token = ""
        while True:
            request = tasks_pb2.ListTasksRequest(status=_status(status), operation=operation,
                                                 requested_by_kind=requested_by_kind, target_repo=target_repo,
                                                 worker_id=worker_id, page_size=page_size, page_token=token)
            page = self.call(self.tasks.ListTasks, request)
            yield from page.tasks
            token = page.next_page_token
            if not token:
                return

    def cancel(self, task_id: str, reason: str = "") -> tasks_pb2.Task:
        return self.call(self.tasks.CancelTask, tasks_pb2.CancelTaskRequest(id=task_id, reason=reason))

    def watch(self, *, status: Optional[str] = None, operation: str = "", target_repo: str = "",
              worker_id: str = "", cursor: str = "", timeout: Optional[float] = None) -> Iterator[tasks_pb2.TaskEvent]:
        """Task transitions as they happen (or after ``cursor``); iterate, and close the iterator to stop."""
        request = tasks_pb2.WatchTasksRequest(status=_status(status), operation=operation, target_repo=target_repo,
                                              worker_id=worker_id, cursor=cursor)
        stream = self.call(self.tasks.WatchTasks, request, timeout=timeout)
        try:
            yield from stream
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise ControlTowerError.from_rpc_error(error) from None
        finally:
            stream.cancel()

    # Audit.

    def audit_events(self, **filter_fields) -> Iterator[audit_pb2.AuditEvent]:
        """Audit entries, newest first; filters: entity_kind, entity_id, trace_id, actor_id, action."""
        token = ""
        while True:
            request = audit_pb2.ListAuditEventsRequest(filter=audit_pb2.AuditFilter(**filter_fields), page_size=500,
                                                       page_token=token)
            page = self.call(self.audit.ListAuditEvents, request)
            yield from page.events
            token = page.next_page_token
            if not token:
                return
