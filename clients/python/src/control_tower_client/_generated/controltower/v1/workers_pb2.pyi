import datetime

from control_tower_client._generated.controltower.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PullTasksRequest(_message.Message):
    __slots__ = ("worker_id", "operations", "max_in_flight")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    operations: _containers.RepeatedScalarFieldContainer[str]
    max_in_flight: int
    def __init__(self, worker_id: _Optional[str] = ..., operations: _Optional[_Iterable[str]] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class PullTasksResponse(_message.Message):
    __slots__ = ("assignment", "cancelled", "draining")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    assignment: TaskAssignment
    cancelled: LeaseCancelled
    draining: ServerDraining
    def __init__(self, assignment: _Optional[_Union[TaskAssignment, _Mapping]] = ..., cancelled: _Optional[_Union[LeaseCancelled, _Mapping]] = ..., draining: _Optional[_Union[ServerDraining, _Mapping]] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task", "lease_id", "lease_deadline", "attempt", "lease_timeout")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    task: _tasks_pb2.Task
    lease_id: str
    lease_deadline: _timestamp_pb2.Timestamp
    attempt: int
    lease_timeout: _duration_pb2.Duration
    def __init__(self, task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., lease_id: _Optional[str] = ..., lease_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., lease_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LeaseCancelled(_message.Message):
    __slots__ = ("lease_id", "task_id", "reason")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    task_id: str
    reason: str
    def __init__(self, lease_id: _Optional[str] = ..., task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ServerDraining(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "lease_ids", "draining")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    draining: bool
    def __init__(self, worker_id: _Optional[str] = ..., lease_ids: _Optional[_Iterable[str]] = ..., draining: _Optional[bool] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("extended", "cancelled", "lost", "lease_deadline")
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    extended: _containers.RepeatedScalarFieldContainer[str]
    cancelled: _containers.RepeatedScalarFieldContainer[str]
    lost: _containers.RepeatedScalarFieldContainer[str]
    lease_deadline: _timestamp_pb2.Timestamp
    def __init__(self, extended: _Optional[_Iterable[str]] = ..., cancelled: _Optional[_Iterable[str]] = ..., lost: _Optional[_Iterable[str]] = ..., lease_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("lease_id", "result")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    result: _struct_pb2.Struct
    def __init__(self, lease_id: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CompleteTasksRequest(_message.Message):
    __slots__ = ("requests", "view")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CompleteTaskRequest]
    view: _tasks_pb2.TaskView
    def __init__(self, requests: _Optional[_Iterable[_Union[CompleteTaskRequest, _Mapping]]] = ..., view: _Optional[_Union[_tasks_pb2.TaskView, str]] = ...) -> None: ...

class CompleteTaskResult(_message.Message):
    __slots__ = ("task", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _tasks_pb2.Task
    error: _tasks_pb2.ItemError
    def __init__(self, task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., error: _Optional[_Union[_tasks_pb2.ItemError, _Mapping]] = ...) -> None: ...

class CompleteTasksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CompleteTaskResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CompleteTaskResult, _Mapping]]] = ...) -> None: ...

class FailTaskRequest(_message.Message):
    __slots__ = ("lease_id", "error", "retryable")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    error: str
    retryable: bool
    def __init__(self, lease_id: _Optional[str] = ..., error: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class TraceChunk(_message.Message):
    __slots__ = ("lease_id", "file", "offset", "data", "eof")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    file: str
    offset: int
    data: bytes
    eof: bool
    def __init__(self, lease_id: _Optional[str] = ..., file: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class TraceFileSummary(_message.Message):
    __slots__ = ("file", "size_bytes")
    FILE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    file: str
    size_bytes: int
    def __init__(self, file: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class PushTraceResponse(_message.Message):
    __slots__ = ("files", "bytes_written", "bytes_skipped")
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    BYTES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[TraceFileSummary]
    bytes_written: int
    bytes_skipped: int
    def __init__(self, files: _Optional[_Iterable[_Union[TraceFileSummary, _Mapping]]] = ..., bytes_written: _Optional[int] = ..., bytes_skipped: _Optional[int] = ...) -> None: ...
