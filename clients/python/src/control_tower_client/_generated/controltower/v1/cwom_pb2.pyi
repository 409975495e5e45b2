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

class ObjectKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_KIND_UNSPECIFIED: _ClassVar[ObjectKind]
    OBJECT_KIND_REPO: _ClassVar[ObjectKind]
    OBJECT_KIND_ISSUE: _ClassVar[ObjectKind]
    OBJECT_KIND_CONTEXT_PACKET: _ClassVar[ObjectKind]
    OBJECT_KIND_RUN: _ClassVar[ObjectKind]
    OBJECT_KIND_ARTIFACT: _ClassVar[ObjectKind]
    OBJECT_KIND_CONSTRAINT_SNAPSHOT: _ClassVar[ObjectKind]
    OBJECT_KIND_DOCTRINE_REF: _ClassVar[ObjectKind]

class WorkStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORK_STATUS_UNSPECIFIED: _ClassVar[WorkStatus]
    WORK_STATUS_PLANNED: _ClassVar[WorkStatus]
    WORK_STATUS_READY: _ClassVar[WorkStatus]
    WORK_STATUS_RUNNING: _ClassVar[WorkStatus]
    WORK_STATUS_BLOCKED: _ClassVar[WorkStatus]
    WORK_STATUS_DONE: _ClassVar[WorkStatus]
    WORK_STATUS_FAILED: _ClassVar[WorkStatus]
    WORK_STATUS_CANCELED: _ClassVar[WorkStatus]
    WORK_STATUS_UNDER_REVIEW: _ClassVar[WorkStatus]

class IssueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ISSUE_TYPE_UNSPECIFIED: _ClassVar[IssueType]
    ISSUE_TYPE_FEATURE: _ClassVar[IssueType]
    ISSUE_TYPE_BUG: _ClassVar[IssueType]
    ISSUE_TYPE_CHORE: _ClassVar[IssueType]
    ISSUE_TYPE_RESEARCH: _ClassVar[IssueType]
    ISSUE_TYPE_OPS: _ClassVar[IssueType]
    ISSUE_TYPE_DOC: _ClassVar[IssueType]
    ISSUE_TYPE_INCIDENT: _ClassVar[IssueType]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_P0: _ClassVar[Priority]
    PRIORITY_P1: _ClassVar[Priority]
    PRIORITY_P2: _ClassVar[Priority]
    PRIORITY_P3: _ClassVar[Priority]
    PRIORITY_P4: _ClassVar[Priority]

class RunMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_MODE_UNSPECIFIED: _ClassVar[RunMode]
    RUN_MODE_HUMAN: _ClassVar[RunMode]
    RUN_MODE_AGENT: _ClassVar[RunMode]
    RUN_MODE_HYBRID: _ClassVar[RunMode]
    RUN_MODE_SYSTEM: _ClassVar[RunMode]

class ArtifactType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_TYPE_UNSPECIFIED: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_CODE_PATCH: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_COMMIT: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_PR: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_BUILD: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_CONTAINER_IMAGE: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_DOC: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_REPORT: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_DATASET: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_LOG: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_TRACE: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_BINARY: _ClassVar[ArtifactType]
    ARTIFACT_TYPE_LINK: _ClassVar[ArtifactType]

class VerificationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFICATION_STATUS_UNSPECIFIED: _ClassVar[VerificationStatus]
    VERIFICATION_STATUS_UNVERIFIED: _ClassVar[VerificationStatus]
    VERIFICATION_STATUS_PASSED: _ClassVar[VerificationStatus]
    VERIFICATION_STATUS_FAILED: _ClassVar[VerificationStatus]

class DoctrineType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCTRINE_TYPE_UNSPECIFIED: _ClassVar[DoctrineType]
    DOCTRINE_TYPE_PRINCIPLE: _ClassVar[DoctrineType]
    DOCTRINE_TYPE_POLICY: _ClassVar[DoctrineType]
    DOCTRINE_TYPE_PROCEDURE: _ClassVar[DoctrineType]
    DOCTRINE_TYPE_HEURISTIC: _ClassVar[DoctrineType]
    DOCTRINE_TYPE_PATTERN: _ClassVar[DoctrineType]

class DoctrinePriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCTRINE_PRIORITY_UNSPECIFIED: _ClassVar[DoctrinePriority]
    DOCTRINE_PRIORITY_MUST: _ClassVar[DoctrinePriority]
    DOCTRINE_PRIORITY_SHOULD: _ClassVar[DoctrinePriority]
    DOCTRINE_PRIORITY_MAY: _ClassVar[DoctrinePriority]

class Visibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VISIBILITY_UNSPECIFIED: _ClassVar[Visibility]
    VISIBILITY_PUBLIC: _ClassVar[Visibility]
    VISIBILITY_PRIVATE: _ClassVar[Visibility]
    VISIBILITY_INTERNAL: _ClassVar[Visibility]

class ConstraintScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSTRAINT_SCOPE_UNSPECIFIED: _ClassVar[ConstraintScope]
    CONSTRAINT_SCOPE_PERSONAL: _ClassVar[ConstraintScope]
    CONSTRAINT_SCOPE_REPO: _ClassVar[ConstraintScope]
    CONSTRAINT_SCOPE_ORG: _ClassVar[ConstraintScope]
    CONSTRAINT_SCOPE_SYSTEM: _ClassVar[ConstraintScope]
    CONSTRAINT_SCOPE_RUN: _ClassVar[ConstraintScope]

class Connectivity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTIVITY_UNSPECIFIED: _ClassVar[Connectivity]
    CONNECTIVITY_OFFLINE: _ClassVar[Connectivity]
    CONNECTIVITY_LIMITED: _ClassVar[Connectivity]
    CONNECTIVITY_OK: _ClassVar[Connectivity]

class RiskTolerance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_TOLERANCE_UNSPECIFIED: _ClassVar[RiskTolerance]
    RISK_TOLERANCE_LOW: _ClassVar[RiskTolerance]
    RISK_TOLERANCE_MEDIUM: _ClassVar[RiskTolerance]
    RISK_TOLERANCE_HIGH: _ClassVar[RiskTolerance]

class FailureCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_CATEGORY_UNSPECIFIED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_POLICY: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_BUILD: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_TEST: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_RUNTIME: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_DEPENDENCY: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_UNKNOWN: _ClassVar[FailureCategory]

class ActorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_KIND_UNSPECIFIED: _ClassVar[ActorKind]
    ACTOR_KIND_HUMAN: _ClassVar[ActorKind]
    ACTOR_KIND_AGENT: _ClassVar[ActorKind]
    ACTOR_KIND_SYSTEM: _ClassVar[ActorKind]
OBJECT_KIND_UNSPECIFIED: ObjectKind
OBJECT_KIND_REPO: ObjectKind
OBJECT_KIND_ISSUE: ObjectKind
OBJECT_KIND_CONTEXT_PACKET: ObjectKind
OBJECT_KIND_RUN: ObjectKind
OBJECT_KIND_ARTIFACT: ObjectKind
OBJECT_KIND_CONSTRAINT_SNAPSHOT: ObjectKind
OBJECT_KIND_DOCTRINE_REF: ObjectKind
WORK_STATUS_UNSPECIFIED: WorkStatus
WORK_STATUS_PLANNED: WorkStatus
WORK_STATUS_READY: WorkStatus
WORK_STATUS_RUNNING: WorkStatus
WORK_STATUS_BLOCKED: WorkStatus
WORK_STATUS_DONE: WorkStatus
WORK_STATUS_FAILED: WorkStatus
WORK_STATUS_CANCELED: WorkStatus
WORK_STATUS_UNDER_REVIEW: WorkStatus
ISSUE_TYPE_UNSPECIFIED: IssueType
ISSUE_TYPE_FEATURE: IssueType
ISSUE_TYPE_BUG: IssueType
ISSUE_TYPE_CHORE: IssueType
ISSUE_TYPE_RESEARCH: IssueType
ISSUE_TYPE_OPS: IssueType
ISSUE_TYPE_DOC: IssueType
ISSUE_TYPE_INCIDENT: IssueType
PRIORITY_UNSPECIFIED: Priority
PRIORITY_P0: Priority
PRIORITY_P1: Priority
PRIORITY_P2: Priority
PRIORITY_P3: Priority
PRIORITY_P4: Priority
RUN_MODE_UNSPECIFIED: RunMode
RUN_MODE_HUMAN: RunMode
RUN_MODE_AGENT: RunMode
RUN_MODE_HYBRID: RunMode
RUN_MODE_SYSTEM: RunMode
ARTIFACT_TYPE_UNSPECIFIED: ArtifactType
ARTIFACT_TYPE_CODE_PATCH: ArtifactType
ARTIFACT_TYPE_COMMIT: ArtifactType
ARTIFACT_TYPE_PR: ArtifactType
ARTIFACT_TYPE_BUILD: ArtifactType
ARTIFACT_TYPE_CONTAINER_IMAGE: ArtifactType
ARTIFACT_TYPE_DOC: ArtifactType
ARTIFACT_TYPE_REPORT: ArtifactType
ARTIFACT_TYPE_DATASET: ArtifactType
ARTIFACT_TYPE_LOG: ArtifactType
ARTIFACT_TYPE_TRACE: ArtifactType
ARTIFACT_TYPE_BINARY: ArtifactType
ARTIFACT_TYPE_LINK: ArtifactType
VERIFICATION_STATUS_UNSPECIFIED: VerificationStatus
VERIFICATION_STATUS_UNVERIFIED: VerificationStatus
VERIFICATION_STATUS_PASSED: VerificationStatus
VERIFICATION_STATUS_FAILED: VerificationStatus
DOCTRINE_TYPE_UNSPECIFIED: DoctrineType
DOCTRINE_TYPE_PRINCIPLE: DoctrineType
DOCTRINE_TYPE_POLICY: DoctrineType
DOCTRINE_TYPE_PROCEDURE: DoctrineType
DOCTRINE_TYPE_HEURISTIC: DoctrineType
DOCTRINE_TYPE_PATTERN: DoctrineType
DOCTRINE_PRIORITY_UNSPECIFIED: DoctrinePriority
DOCTRINE_PRIORITY_MUST: DoctrinePriority
DOCTRINE_PRIORITY_SHOULD: DoctrinePriority
DOCTRINE_PRIORITY_MAY: DoctrinePriority
VISIBILITY_UNSPECIFIED: Visibility
VISIBILITY_PUBLIC: Visibility
VISIBILITY_PRIVATE: Visibility
VISIBILITY_INTERNAL: Visibility
CONSTRAINT_SCOPE_UNSPECIFIED: ConstraintScope
CONSTRAINT_SCOPE_PERSONAL: ConstraintScope
CONSTRAINT_SCOPE_REPO: ConstraintScope
CONSTRAINT_SCOPE_ORG: ConstraintScope
CONSTRAINT_SCOPE_SYSTEM: ConstraintScope
CONSTRAINT_SCOPE_RUN: ConstraintScope
CONNECTIVITY_UNSPECIFIED: Connectivity
CONNECTIVITY_OFFLINE: Connectivity
CONNECTIVITY_LIMITED: Connectivity
CONNECTIVITY_OK: Connectivity
RISK_TOLERANCE_UNSPECIFIED: RiskTolerance
RISK_TOLERANCE_LOW: RiskTolerance
RISK_TOLERANCE_MEDIUM: RiskTolerance
RISK_TOLERANCE_HIGH: RiskTolerance
FAILURE_CATEGORY_UNSPECIFIED: FailureCategory
FAILURE_CATEGORY_POLICY: FailureCategory
FAILURE_CATEGORY_BUILD: FailureCategory
FAILURE_CATEGORY_TEST: FailureCategory
FAILURE_CATEGORY_RUNTIME: FailureCategory
FAILURE_CATEGORY_DEPENDENCY: FailureCategory
FAILURE_CATEGORY_UNKNOWN: FailureCategory
ACTOR_KIND_UNSPECIFIED: ActorKind
ACTOR_KIND_HUMAN: ActorKind
ACTOR_KIND_AGENT: ActorKind
ACTOR_KIND_SYSTEM: ActorKind

class Actor(_message.Message):
    __slots__ = ("actor_kind", "actor_id", "display")
    ACTOR_KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    actor_kind: ActorKind
    actor_id: str
    display: str
    def __init__(self, actor_kind: _Optional[_Union[ActorKind, str]] = ..., actor_id: _Optional[str] = ..., display: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("system", "external_id", "url")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    system: str
    external_id: str
    url: str
    def __init__(self, system: _Optional[str] = ..., external_id: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class Ref(_message.Message):
    __slots__ = ("kind", "id", "role")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    kind: ObjectKind
    id: str
    role: str
    def __init__(self, kind: _Optional[_Union[ObjectKind, str]] = ..., id: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class RepoPolicy(_message.Message):
    __slots__ = ("allowed_tools", "secrets_profile")
    ALLOWED_TOOLS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_PROFILE_FIELD_NUMBER: _ClassVar[int]
    allowed_tools: _containers.RepeatedScalarFieldContainer[str]
    secrets_profile: str
    def __init__(self, allowed_tools: _Optional[_Iterable[str]] = ..., secrets_profile: _Optional[str] = ...) -> None: ...

class Repo(_message.Message):
    __slots__ = ("id", "name", "slug", "source", "default_branch", "visibility", "owners", "policy", "links", "tags", "meta", "trace_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    slug: str
    source: Source
    default_branch: str
    visibility: Visibility
    owners: _containers.RepeatedCompositeFieldContainer[Actor]
    policy: RepoPolicy
    links: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., slug: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., default_branch: _Optional[str] = ..., visibility: _Optional[_Union[Visibility, str]] = ..., owners: _Optional[_Iterable[_Union[Actor, _Mapping]]] = ..., policy: _Optional[_Union[RepoPolicy, _Mapping]] = ..., links: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Acceptance(_message.Message):
    __slots__ = ("criteria", "tests_expected")
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    TESTS_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    criteria: _containers.RepeatedScalarFieldContainer[str]
    tests_expected: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, criteria: _Optional[_Iterable[str]] = ..., tests_expected: _Optional[_Iterable[str]] = ...) -> None: ...

class Relationships(_message.Message):
    __slots__ = ("parent", "blocks", "blocked_by", "duplicates")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_BY_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    parent: Ref
    blocks: _containers.RepeatedCompositeFieldContainer[Ref]
    blocked_by: _containers.RepeatedCompositeFieldContainer[Ref]
    duplicates: _containers.RepeatedCompositeFieldContainer[Ref]
    def __init__(self, parent: _Optional[_Union[Ref, _Mapping]] = ..., blocks: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., blocked_by: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., duplicates: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ...) -> None: ...

class Issue(_message.Message):
    __slots__ = ("id", "repo", "title", "description", "type", "priority", "status", "assignees", "watchers", "doctrine_refs", "constraints", "context_packets", "acceptance", "relationships", "runs", "tags", "meta", "trace_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEES_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    DOCTRINE_REFS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PACKETS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    repo: Ref
    title: str
    description: str
    type: IssueType
    priority: Priority
    status: WorkStatus
    assignees: _containers.RepeatedCompositeFieldContainer[Actor]
    watchers: _containers.RepeatedCompositeFieldContainer[Actor]
    doctrine_refs: _containers.RepeatedCompositeFieldContainer[Ref]
    constraints: _containers.RepeatedCompositeFieldContainer[Ref]
    context_packets: _containers.RepeatedCompositeFieldContainer[Ref]
    acceptance: Acceptance
    relationships: Relationships
    runs: _containers.RepeatedCompositeFieldContainer[Ref]
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., repo: _Optional[_Union[Ref, _Mapping]] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., type: _Optional[_Union[IssueType, str]] = ..., priority: _Optional[_Union[Priority, str]] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., assignees: _Optional[_Iterable[_Union[Actor, _Mapping]]] = ..., watchers: _Optional[_Iterable[_Union[Actor, _Mapping]]] = ..., doctrine_refs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., constraints: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., context_packets: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., acceptance: _Optional[_Union[Acceptance, _Mapping]] = ..., relationships: _Optional[_Union[Relationships, _Mapping]] = ..., runs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("title", "uri", "digest", "excerpt")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    EXCERPT_FIELD_NUMBER: _ClassVar[int]
    title: str
    uri: str
    digest: str
    excerpt: str
    def __init__(self, title: _Optional[str] = ..., uri: _Optional[str] = ..., digest: _Optional[str] = ..., excerpt: _Optional[str] = ...) -> None: ...

class DataBlob(_message.Message):
    __slots__ = ("name", "media_type", "uri", "inline", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_type: str
    uri: str
    inline: str
    digest: str
    def __init__(self, name: _Optional[str] = ..., media_type: _Optional[str] = ..., uri: _Optional[str] = ..., inline: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class ContextInputs(_message.Message):
    __slots__ = ("documents", "data_blobs", "links")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_BLOBS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    data_blobs: _containers.RepeatedCompositeFieldContainer[DataBlob]
    links: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., data_blobs: _Optional[_Iterable[_Union[DataBlob, _Mapping]]] = ..., links: _Optional[_Iterable[str]] = ...) -> None: ...

class ContextPacket(_message.Message):
    __slots__ = ("id", "for_issue", "version", "sequence", "summary", "inputs", "assumptions", "open_questions", "instructions", "doctrine_refs", "constraint_snapshot", "tags", "meta", "trace_id", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOR_ISSUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ASSUMPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPEN_QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    DOCTRINE_REFS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    for_issue: Ref
    version: str
    sequence: int
    summary: str
    inputs: ContextInputs
    assumptions: _containers.RepeatedScalarFieldContainer[str]
    open_questions: _containers.RepeatedScalarFieldContainer[str]
    instructions: str
    doctrine_refs: _containers.RepeatedCompositeFieldContainer[Ref]
    constraint_snapshot: Ref
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., for_issue: _Optional[_Union[Ref, _Mapping]] = ..., version: _Optional[str] = ..., sequence: _Optional[int] = ..., summary: _Optional[str] = ..., inputs: _Optional[_Union[ContextInputs, _Mapping]] = ..., assumptions: _Optional[_Iterable[str]] = ..., open_questions: _Optional[_Iterable[str]] = ..., instructions: _Optional[str] = ..., doctrine_refs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., constraint_snapshot: _Optional[_Union[Ref, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TimeConstraints(_message.Message):
    __slots__ = ("available_minutes", "deadline")
    AVAILABLE_MINUTES_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    available_minutes: int
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, available_minutes: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnergyConstraints(_message.Message):
    __slots__ = ("score_0_5", "notes")
    SCORE_0_5_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    score_0_5: float
    notes: str
    def __init__(self, score_0_5: _Optional[float] = ..., notes: _Optional[str] = ...) -> None: ...

class HealthConstraints(_message.Message):
    __slots__ = ("flags", "notes")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    def __init__(self, flags: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ...) -> None: ...

class BudgetConstraints(_message.Message):
    __slots__ = ("usd_available", "burn_limit_usd")
    USD_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    BURN_LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    usd_available: float
    burn_limit_usd: float
    def __init__(self, usd_available: _Optional[float] = ..., burn_limit_usd: _Optional[float] = ...) -> None: ...

class ToolConstraints(_message.Message):
    __slots__ = ("allowed", "blocked")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    allowed: _containers.RepeatedScalarFieldContainer[str]
    blocked: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allowed: _Optional[_Iterable[str]] = ..., blocked: _Optional[_Iterable[str]] = ...) -> None: ...

class EnvironmentConstraints(_message.Message):
    __slots__ = ("location", "connectivity", "device")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CONNECTIVITY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    location: str
    connectivity: Connectivity
    device: str
    def __init__(self, location: _Optional[str] = ..., connectivity: _Optional[_Union[Connectivity, str]] = ..., device: _Optional[str] = ...) -> None: ...

class RiskConstraints(_message.Message):
    __slots__ = ("tolerance", "notes")
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    tolerance: RiskTolerance
    notes: str
    def __init__(self, tolerance: _Optional[_Union[RiskTolerance, str]] = ..., notes: _Optional[str] = ...) -> None: ...

class ConstraintSet(_message.Message):
    __slots__ = ("time", "energy", "health", "budget", "tools", "environment", "risk")
    TIME_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    time: TimeConstraints
    energy: EnergyConstraints
    health: HealthConstraints
    budget: BudgetConstraints
    tools: ToolConstraints
    environment: EnvironmentConstraints
    risk: RiskConstraints
    def __init__(self, time: _Optional[_Union[TimeConstraints, _Mapping]] = ..., energy: _Optional[_Union[EnergyConstraints, _Mapping]] = ..., health: _Optional[_Union[HealthConstraints, _Mapping]] = ..., budget: _Optional[_Union[BudgetConstraints, _Mapping]] = ..., tools: _Optional[_Union[ToolConstraints, _Mapping]] = ..., environment: _Optional[_Union[EnvironmentConstraints, _Mapping]] = ..., risk: _Optional[_Union[RiskConstraints, _Mapping]] = ...) -> None: ...

class ConstraintSnapshot(_message.Message):
    __slots__ = ("id", "scope", "captured_at", "owner", "constraints", "tags", "meta", "trace_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: ConstraintScope
    captured_at: _timestamp_pb2.Timestamp
    owner: Actor
    constraints: ConstraintSet
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[ConstraintScope, str]] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[_Union[Actor, _Mapping]] = ..., constraints: _Optional[_Union[ConstraintSet, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class Applicability(_message.Message):
    __slots__ = ("repo_refs", "issue_types", "tags")
    REPO_REFS_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TYPES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    repo_refs: _containers.RepeatedCompositeFieldContainer[Ref]
    issue_types: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repo_refs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., issue_types: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class DoctrineRef(_message.Message):
    __slots__ = ("id", "namespace", "name", "version", "type", "priority", "statement", "rationale", "links", "applicability", "tags", "meta", "trace_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    APPLICABILITY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    namespace: str
    name: str
    version: str
    type: DoctrineType
    priority: DoctrinePriority
    statement: str
    rationale: str
    links: _containers.RepeatedScalarFieldContainer[str]
    applicability: Applicability
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., type: _Optional[_Union[DoctrineType, str]] = ..., priority: _Optional[_Union[DoctrinePriority, str]] = ..., statement: _Optional[str] = ..., rationale: _Optional[str] = ..., links: _Optional[_Iterable[str]] = ..., applicability: _Optional[_Union[Applicability, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Executor(_message.Message):
    __slots__ = ("actor", "runtime", "toolchain")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    TOOLCHAIN_FIELD_NUMBER: _ClassVar[int]
    actor: Actor
    runtime: str
    toolchain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, actor: _Optional[_Union[Actor, _Mapping]] = ..., runtime: _Optional[str] = ..., toolchain: _Optional[_Iterable[str]] = ...) -> None: ...

class RunInputs(_message.Message):
    __slots__ = ("context_packets", "doctrine_refs", "constraint_snapshot")
    CONTEXT_PACKETS_FIELD_NUMBER: _ClassVar[int]
    DOCTRINE_REFS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    context_packets: _containers.RepeatedCompositeFieldContainer[Ref]
    doctrine_refs: _containers.RepeatedCompositeFieldContainer[Ref]
    constraint_snapshot: Ref
    def __init__(self, context_packets: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., doctrine_refs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., constraint_snapshot: _Optional[_Union[Ref, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("steps", "risk_notes")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RISK_NOTES_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedScalarFieldContainer[str]
    risk_notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, steps: _Optional[_Iterable[str]] = ..., risk_notes: _Optional[_Iterable[str]] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("started_at", "ended_at", "duration_s")
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    duration_s: float
    def __init__(self, started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_s: _Optional[float] = ...) -> None: ...

class Cost(_message.Message):
    __slots__ = ("usd", "tokens", "compute_s")
    USD_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    usd: float
    tokens: int
    compute_s: float
    def __init__(self, usd: _Optional[float] = ..., tokens: _Optional[int] = ..., compute_s: _Optional[float] = ...) -> None: ...

class RunOutputs(_message.Message):
    __slots__ = ("artifacts", "result_summary", "decision_log")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DECISION_LOG_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Ref]
    result_summary: str
    decision_log: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ..., result_summary: _Optional[str] = ..., decision_log: _Optional[_Iterable[str]] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("category", "message")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    category: FailureCategory
    message: str
    def __init__(self, category: _Optional[_Union[FailureCategory, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("id", "for_issue", "repo", "status", "mode", "executor", "inputs", "plan", "telemetry", "cost", "outputs", "failure", "artifact_root_uri", "task_id", "task_attempt", "tags", "meta", "trace_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOR_ISSUE_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ROOT_URI_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    for_issue: Ref
    repo: Ref
    status: WorkStatus
    mode: RunMode
    executor: Executor
    inputs: RunInputs
    plan: Plan
    telemetry: Telemetry
    cost: Cost
    outputs: RunOutputs
    failure: Failure
    artifact_root_uri: str
    task_id: str
    task_attempt: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., for_issue: _Optional[_Union[Ref, _Mapping]] = ..., repo: _Optional[_Union[Ref, _Mapping]] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., mode: _Optional[_Union[RunMode, str]] = ..., executor: _Optional[_Union[Executor, _Mapping]] = ..., inputs: _Optional[_Union[RunInputs, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., telemetry: _Optional[_Union[Telemetry, _Mapping]] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., outputs: _Optional[_Union[RunOutputs, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., artifact_root_uri: _Optional[str] = ..., task_id: _Optional[str] = ..., task_attempt: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerificationCheck(_message.Message):
    __slots__ = ("name", "status", "evidence_uri")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_URI_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: VerificationStatus
    evidence_uri: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[VerificationStatus, str]] = ..., evidence_uri: _Optional[str] = ...) -> None: ...

class Verification(_message.Message):
    __slots__ = ("status", "checks")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    status: VerificationStatus
    checks: _containers.RepeatedCompositeFieldContainer[VerificationCheck]
    def __init__(self, status: _Optional[_Union[VerificationStatus, str]] = ..., checks: _Optional[_Iterable[_Union[VerificationCheck, _Mapping]]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("id", "produced_by", "for_issue", "type", "title", "uri", "digest", "media_type", "size_bytes", "preview", "verification", "tags", "meta", "trace_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_BY_FIELD_NUMBER: _ClassVar[int]
    FOR_ISSUE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    produced_by: Ref
    for_issue: Ref
    type: ArtifactType
    title: str
    uri: str
    digest: str
    media_type: str
    size_bytes: int
    preview: str
    verification: Verification
    tags: _containers.RepeatedScalarFieldContainer[str]
    meta: _struct_pb2.Struct
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., produced_by: _Optional[_Union[Ref, _Mapping]] = ..., for_issue: _Optional[_Union[Ref, _Mapping]] = ..., type: _Optional[_Union[ArtifactType, str]] = ..., title: _Optional[str] = ..., uri: _Optional[str] = ..., digest: _Optional[str] = ..., media_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., preview: _Optional[str] = ..., verification: _Optional[_Union[Verification, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetObjectRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateRepoRequest(_message.Message):
    __slots__ = ("repo",)
    REPO_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ...) -> None: ...

class UpdateRepoRequest(_message.Message):
    __slots__ = ("repo",)
    REPO_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ...) -> None: ...

class ListReposRequest(_message.Message):
    __slots__ = ("visibility", "page_size", "page_token")
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    visibility: Visibility
    page_size: int
    page_token: str
    def __init__(self, visibility: _Optional[_Union[Visibility, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReposResponse(_message.Message):
    __slots__ = ("repos", "next_page_token")
    REPOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    repos: _containers.RepeatedCompositeFieldContainer[Repo]
    next_page_token: str
    def __init__(self, repos: _Optional[_Iterable[_Union[Repo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateIssueRequest(_message.Message):
    __slots__ = ("issue",)
    ISSUE_FIELD_NUMBER: _ClassVar[int]
    issue: Issue
    def __init__(self, issue: _Optional[_Union[Issue, _Mapping]] = ...) -> None: ...

class UpdateIssueRequest(_message.Message):
    __slots__ = ("issue",)
    ISSUE_FIELD_NUMBER: _ClassVar[int]
    issue: Issue
    def __init__(self, issue: _Optional[_Union[Issue, _Mapping]] = ...) -> None: ...

class UpdateIssueStatusRequest(_message.Message):
    __slots__ = ("id", "status", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: WorkStatus
    note: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., note: _Optional[str] = ...) -> None: ...

class ListIssuesRequest(_message.Message):
    __slots__ = ("repo_id", "status", "type", "priority", "page_size", "page_token")
    REPO_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    repo_id: str
    status: WorkStatus
    type: IssueType
    priority: Priority
    page_size: int
    page_token: str
    def __init__(self, repo_id: _Optional[str] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., type: _Optional[_Union[IssueType, str]] = ..., priority: _Optional[_Union[Priority, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIssuesResponse(_message.Message):
    __slots__ = ("issues", "next_page_token")
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    issues: _containers.RepeatedCompositeFieldContainer[Issue]
    next_page_token: str
    def __init__(self, issues: _Optional[_Iterable[_Union[Issue, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateContextPacketRequest(_message.Message):
    __slots__ = ("context_packet",)
    CONTEXT_PACKET_FIELD_NUMBER: _ClassVar[int]
    context_packet: ContextPacket
    def __init__(self, context_packet: _Optional[_Union[ContextPacket, _Mapping]] = ...) -> None: ...

class UpdateContextPacketRequest(_message.Message):
    __slots__ = ("context_packet",)
    CONTEXT_PACKET_FIELD_NUMBER: _ClassVar[int]
    context_packet: ContextPacket
    def __init__(self, context_packet: _Optional[_Union[ContextPacket, _Mapping]] = ...) -> None: ...

class ListContextPacketsRequest(_message.Message):
    __slots__ = ("issue_id", "page_size", "page_token")
    ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    issue_id: str
    page_size: int
    page_token: str
    def __init__(self, issue_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListContextPacketsResponse(_message.Message):
    __slots__ = ("context_packets", "next_page_token")
    CONTEXT_PACKETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    context_packets: _containers.RepeatedCompositeFieldContainer[ContextPacket]
    next_page_token: str
    def __init__(self, context_packets: _Optional[_Iterable[_Union[ContextPacket, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateConstraintSnapshotRequest(_message.Message):
    __slots__ = ("constraint_snapshot",)
    CONSTRAINT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    constraint_snapshot: ConstraintSnapshot
    def __init__(self, constraint_snapshot: _Optional[_Union[ConstraintSnapshot, _Mapping]] = ...) -> None: ...

class UpdateConstraintSnapshotRequest(_message.Message):
    __slots__ = ("constraint_snapshot",)
    CONSTRAINT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    constraint_snapshot: ConstraintSnapshot
    def __init__(self, constraint_snapshot: _Optional[_Union[ConstraintSnapshot, _Mapping]] = ...) -> None: ...

class ListConstraintSnapshotsRequest(_message.Message):
    __slots__ = ("scope", "owner_id", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: ConstraintScope
    owner_id: str
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[ConstraintScope, str]] = ..., owner_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConstraintSnapshotsResponse(_message.Message):
    __slots__ = ("constraint_snapshots", "next_page_token")
    CONSTRAINT_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    constraint_snapshots: _containers.RepeatedCompositeFieldContainer[ConstraintSnapshot]
    next_page_token: str
    def __init__(self, constraint_snapshots: _Optional[_Iterable[_Union[ConstraintSnapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateDoctrineRefRequest(_message.Message):
    __slots__ = ("doctrine_ref",)
    DOCTRINE_REF_FIELD_NUMBER: _ClassVar[int]
    doctrine_ref: DoctrineRef
    def __init__(self, doctrine_ref: _Optional[_Union[DoctrineRef, _Mapping]] = ...) -> None: ...

class UpdateDoctrineRefRequest(_message.Message):
    __slots__ = ("doctrine_ref",)
    DOCTRINE_REF_FIELD_NUMBER: _ClassVar[int]
    doctrine_ref: DoctrineRef
    def __init__(self, doctrine_ref: _Optional[_Union[DoctrineRef, _Mapping]] = ...) -> None: ...

class ListDoctrineRefsRequest(_message.Message):
    __slots__ = ("namespace", "type", "priority", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    type: DoctrineType
    priority: DoctrinePriority
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., type: _Optional[_Union[DoctrineType, str]] = ..., priority: _Optional[_Union[DoctrinePriority, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDoctrineRefsResponse(_message.Message):
    __slots__ = ("doctrine_refs", "next_page_token")
    DOCTRINE_REFS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    doctrine_refs: _containers.RepeatedCompositeFieldContainer[DoctrineRef]
    next_page_token: str
    def __init__(self, doctrine_refs: _Optional[_Iterable[_Union[DoctrineRef, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateRunRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class UpdateRunRequest(_message.Message):
    __slots__ = ("id", "status", "telemetry", "cost", "outputs", "failure", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: WorkStatus
    telemetry: Telemetry
    cost: Cost
    outputs: RunOutputs
    failure: Failure
    note: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., telemetry: _Optional[_Union[Telemetry, _Mapping]] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., outputs: _Optional[_Union[RunOutputs, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("issue_id", "repo_id", "status", "mode", "page_size", "page_token")
    ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    REPO_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    issue_id: str
    repo_id: str
    status: WorkStatus
    mode: RunMode
    page_size: int
    page_token: str
    def __init__(self, issue_id: _Optional[str] = ..., repo_id: _Optional[str] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., mode: _Optional[_Union[RunMode, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateArtifactRequest(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("run_id", "issue_id", "type", "page_size", "page_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    issue_id: str
    type: ArtifactType
    page_size: int
    page_token: str
    def __init__(self, run_id: _Optional[str] = ..., issue_id: _Optional[str] = ..., type: _Optional[_Union[ArtifactType, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts", "next_page_token")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    next_page_token: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IssueLinkRequest(_message.Message):
    __slots__ = ("issue_id", "target_id")
    ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    issue_id: str
    target_id: str
    def __init__(self, issue_id: _Optional[str] = ..., target_id: _Optional[str] = ...) -> None: ...
