import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditEvent(_message.Message):
    __slots__ = ("id", "ts", "actor_kind", "actor_id", "action", "entity_kind", "entity_id", "before", "after", "note", "trace_id", "cursor")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    id: int
    ts: _timestamp_pb2.Timestamp
    actor_kind: str
    actor_id: str
    action: str
    entity_kind: str
    entity_id: str
    before: _struct_pb2.Struct
    after: _struct_pb2.Struct
    note: str
    trace_id: str
    cursor: str
    def __init__(self, id: _Optional[int] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_kind: _Optional[str] = ..., actor_id: _Optional[str] = ..., action: _Optional[str] = ..., entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., before: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., after: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., note: _Optional[str] = ..., trace_id: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class AuditFilter(_message.Message):
    __slots__ = ("entity_kind", "entity_id", "trace_id", "actor_id", "action", "since", "until")
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    entity_kind: str
    entity_id: str
    trace_id: str
    actor_id: str
    action: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., actor_id: _Optional[str] = ..., action: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: AuditFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[AuditFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAuditEventsRequest(_message.Message):
    __slots__ = ("filter", "cursor")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    filter: AuditFilter
    cursor: str
    def __init__(self, filter: _Optional[_Union[AuditFilter, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class VerifyAuditChainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditChainResponse(_message.Message):
    __slots__ = ("intact", "entries_verified", "entries_unsealed", "head_seq", "head_hash", "first_broken")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_UNSEALED_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    entries_verified: int
    entries_unsealed: int
    head_seq: int
    head_hash: str
    first_broken: BrokenLink
    def __init__(self, intact: _Optional[bool] = ..., entries_verified: _Optional[int] = ..., entries_unsealed: _Optional[int] = ..., head_seq: _Optional[int] = ..., head_hash: _Optional[str] = ..., first_broken: _Optional[_Union[BrokenLink, _Mapping]] = ...) -> None: ...

class BrokenLink(_message.Message):
    __slots__ = ("seq", "audit_id", "reason")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    audit_id: int
    reason: str
    def __init__(self, seq: _Optional[int] = ..., audit_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
