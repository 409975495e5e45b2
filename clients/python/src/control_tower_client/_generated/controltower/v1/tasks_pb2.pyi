import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_RUNNING: _ClassVar[TaskStatus]
    TASK_STATUS_COMPLETED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]

class TaskView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_VIEW_UNSPECIFIED: _ClassVar[TaskView]
    TASK_VIEW_BASIC: _ClassVar[TaskView]
    TASK_VIEW_FULL: _ClassVar[TaskView]
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_RUNNING: TaskStatus
TASK_STATUS_COMPLETED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus
TASK_VIEW_UNSPECIFIED: TaskView
TASK_VIEW_BASIC: TaskView
TASK_VIEW_FULL: TaskView

class Requester(_message.Message):
    __slots__ = ("kind", "id", "label")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    label: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("repo", "ref", "path", "repository")
    REPO_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repo: str
    ref: str
    path: str
    repository: str
    def __init__(self, repo: _Optional[str] = ..., ref: _Optional[str] = ..., path: _Optional[str] = ..., repository: _Optional[str] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ("time_budget_seconds", "allow_network", "allow_secrets")
    TIME_BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NETWORK_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SECRETS_FIELD_NUMBER: _ClassVar[int]
    time_budget_seconds: int
    allow_network: bool
    allow_secrets: bool
    def __init__(self, time_budget_seconds: _Optional[int] = ..., allow_network: _Optional[bool] = ..., allow_secrets: _Optional[bool] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("version", "idempotency_key", "requested_by", "objective", "operation", "target", "constraints", "inputs", "acceptance_criteria", "evidence_requirements", "metadata", "priority", "run_after", "max_attempts", "concurrency_key", "type", "payload")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_CRITERIA_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RUN_AFTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    version: str
    idempotency_key: str
    requested_by: Requester
    objective: str
    operation: str
    target: Target
    constraints: Constraints
    inputs: _struct_pb2.Struct
    acceptance_criteria: _containers.RepeatedScalarFieldContainer[str]
    evidence_requirements: _containers.RepeatedScalarFieldContainer[str]
    metadata: _struct_pb2.Struct
    priority: int
    run_after: _timestamp_pb2.Timestamp
    max_attempts: int
    concurrency_key: str
    type: str
    payload: _struct_pb2.Struct
    def __init__(self, version: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., requested_by: _Optional[_Union[Requester, _Mapping]] = ..., objective: _Optional[str] = ..., operation: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., acceptance_criteria: _Optional[_Iterable[str]] = ..., evidence_requirements: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[int] = ..., run_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_attempts: _Optional[int] = ..., concurrency_key: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "spec", "status", "attempt", "worker_id", "result", "error", "trace_path", "cwom_issue_id", "trace_id", "created_at", "queued_at", "started_at", "completed_at", "lease_expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACE_PATH_FIELD_NUMBER: _ClassVar[int]
    CWOM_ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: TaskSpec
    status: TaskStatus
    attempt: int
    worker_id: str
    result: _struct_pb2.Struct
    error: str
    trace_path: str
    cwom_issue_id: str
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    queued_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[str] = ..., trace_path: _Optional[str] = ..., cwom_issue_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnqueueTaskRequest(_message.Message):
    __slots__ = ("spec", "create_cwom")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATE_CWOM_FIELD_NUMBER: _ClassVar[int]
    spec: TaskSpec
    create_cwom: bool
    def __init__(self, spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., create_cwom: _Optional[bool] = ...) -> None: ...

class CwomIds(_message.Message):
    __slots__ = ("repo_id", "issue_id", "context_packet_id", "constraint_snapshot_id")
    REPO_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    repo_id: str
    issue_id: str
    context_packet_id: str
    constraint_snapshot_id: str
    def __init__(self, repo_id: _Optional[str] = ..., issue_id: _Optional[str] = ..., context_packet_id: _Optional[str] = ..., constraint_snapshot_id: _Optional[str] = ...) -> None: ...

class EnqueueTaskResponse(_message.Message):
    __slots__ = ("task", "created", "cwom")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CWOM_FIELD_NUMBER: _ClassVar[int]
    task: Task
    created: bool
    cwom: CwomIds
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., created: _Optional[bool] = ..., cwom: _Optional[_Union[CwomIds, _Mapping]] = ...) -> None: ...

class EnqueueTasksRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[EnqueueTaskRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[EnqueueTaskRequest, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "reason", "field_violations")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class EnqueueTaskResult(_message.Message):
    __slots__ = ("enqueued", "error")
    ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    enqueued: EnqueueTaskResponse
    error: ItemError
    def __init__(self, enqueued: _Optional[_Union[EnqueueTaskResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class EnqueueTasksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EnqueueTaskResult]
    def __init__(self, results: _Optional[_Iterable[_Union[EnqueueTaskResult, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("status", "operation", "requested_by_kind", "target_repo", "worker_id", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_REPO_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: TaskStatus
    operation: str
    requested_by_kind: str
    target_repo: str
    worker_id: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[TaskStatus, str]] = ..., operation: _Optional[str] = ..., requested_by_kind: _Optional[str] = ..., target_repo: _Optional[str] = ..., worker_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WatchTasksRequest(_message.Message):
    __slots__ = ("status", "operation", "requested_by_kind", "target_repo", "worker_id", "cursor")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_REPO_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    status: TaskStatus
    operation: str
    requested_by_kind: str
    target_repo: str
    worker_id: str
    cursor: str
    def __init__(self, status: _Optional[_Union[TaskStatus, str]] = ..., operation: _Optional[str] = ..., requested_by_kind: _Optional[str] = ..., target_repo: _Optional[str] = ..., worker_id: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task", "action", "from_status", "to_status", "note", "actor_id", "at", "cursor")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    task: Task
    action: str
    from_status: TaskStatus
    to_status: TaskStatus
    note: str
    actor_id: str
    at: _timestamp_pb2.Timestamp
    cursor: str
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., action: _Optional[str] = ..., from_status: _Optional[_Union[TaskStatus, str]] = ..., to_status: _Optional[_Union[TaskStatus, str]] = ..., note: _Optional[str] = ..., actor_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...
