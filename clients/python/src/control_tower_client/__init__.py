"""Python client for Control Tower: ``ControlTower`` for calls, ``Worker`` to run a function as a worker."""

from ._generated.controltower.v1 import audit_pb2, cwom_pb2, tasks_pb2, workers_pb2
from .client import ControlTower, TaskStatus
from .errors import ControlTowerError
from .worker import Retryable, TaskContext, Worker

__all__ = ["ControlTower", "ControlTowerError", "Retryable", "TaskContext", "TaskStatus", "Worker", "audit_pb2",
           "cwom_pb2", "tasks_pb2", "workers_pb2"]
