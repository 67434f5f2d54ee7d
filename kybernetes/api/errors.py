"""API errors as Kubernetes `Status` objects (reason, code, message, details)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error that reaches the client as a meta/v1 Status."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details: dict[str, Any] = {}
        if name is not None:
            self.details["name"] = name
        if group:
            self.details["group"] = group
        if kind is not None:
            self.details["kind"] = kind
        if causes:
            self.details["causes"] = causes
        if retry_after is not None:
            self.details["retryAfterSeconds"] = retry_after

    @classmethod
    def from_status(cls, status: dict, http_code: int) -> "ApiError":
        """The error a server's Status body describes (what clients raise)."""
        details = status.get("details") or {}
        return cls(int(status.get("code") or http_code), status.get("reason") or "Unknown",
                   status.get("message") or f"HTTP {http_code}", name=details.get("name"),
                   group=details.get("group"), kind=details.get("kind"),
                   causes=details.get("causes"), retry_after=details.get("retryAfterSeconds"))

    def status(self) -> dict:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qr = _qualified(resource, group)
    return ApiError(404, "NotFound", f'{qr} "{name}" not found', name=name, group=group,
                    kind=resource)


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    qr = _qualified(resource, group)
    return ApiError(409, "AlreadyExists", f'{qr} "{name}" already exists', name=name,
                    group=group, kind=resource)


def conflict(resource: str, name: str, group: str = "", why: str | None = None) -> ApiError:
    qr = _qualified(resource, group)
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qr} "{name}": {why}',
                    name=name, group=group, kind=resource)


def invalid(kind: str, name: str, causes: list[dict], group: str = "") -> ApiError:
    qk = f"{kind}.{group}" if group else kind
    parts = [_cause_text(c) for c in causes]
    if len(parts) == 1:
        detail = parts[0]
    else:
        detail = "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{qk} "{name}" is invalid: {detail}', name=name,
                    group=group, kind=kind, causes=causes)


def _cause_text(c: dict) -> str:
    field = c.get("field")
    return f"{field}: {c['message']}" if field else c["message"]


def bad_request(message: str, causes: list[dict] | None = None) -> ApiError:
    return ApiError(400, "BadRequest", message, causes=causes)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got "{content_type}")')


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def forbidden(message: str, resource: str = "", name: str = "", group: str = "") -> ApiError:
    return ApiError(403, "Forbidden", message, name=name or None, group=group,
                    kind=resource or None)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def too_large(message: str = "Request entity too large: limit is 3145728") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)
