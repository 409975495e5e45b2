"""Errors of Control Tower calls as Python exceptions."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class ControlTowerError(Exception):
    """A call the server refused or could not answer.

    ``code`` is the gRPC status code; ``reason`` the machine-readable reason when the server gave one (a policy code
    such as ``REPO_NOT_ALLOWED``, or ``LEASE_NOT_HELD``); ``field_violations`` the (field, description) pairs of an
    invalid request.
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "", field_violations=()):
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.field_violations = list(field_violations)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "ControlTowerError":
        reason, violations = "", []
        status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
        return cls(error.code(), error.details() or "", reason, violations)
