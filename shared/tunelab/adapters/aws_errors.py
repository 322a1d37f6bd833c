"""What the AWS providers share: turning botocore errors into the domain's errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tunelab.domain.errors import (
    Conflict,
    NotFound,
    ProviderError,
    ProviderPermissionDenied,
    ProviderTransientError,
    TunelabError,
    ValidationFailed,
)

# Codes AWS documents as retryable: throttling and service-side faults.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ModelNotReadyException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError", "403"}
)
NOT_FOUND_CODES = frozenset(
    {"ResourceNotFoundException", "ResourceNotFound", "NoSuchKey", "NoSuchBucket", "NotFound", "404"}
)
QUOTA_CODES = frozenset({"ResourceLimitExceeded", "ServiceQuotaExceededException", "LimitExceededException"})
CONFLICT_CODES = frozenset({"ResourceInUse", "ResourceInUseException", "ConflictException"})


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or error_code(error)


def is_not_found(error: ClientError) -> bool:
    """Not found, including SageMaker's way of saying it (a ValidationException "Could not find ...")."""
    code = error_code(error)
    if code in NOT_FOUND_CODES:
        return True
    message = error_message(error).lower()
    return code == "ValidationException" and ("could not find" in message or "resource not found" in message)


def translate(error: ClientError, *, action: str, permission: str | None = None) -> TunelabError:
    """The domain error for a failed AWS call; `action` says what was being done, for the message."""
    code = error_code(error)
    message = error_message(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in TRANSIENT_CODES or status >= 500:
        return ProviderTransientError(f"{action}: AWS is busy or unavailable ({code}); try again shortly.")
    if code in ACCESS_DENIED_CODES:
        if permission:
            return ProviderPermissionDenied(
                f"{action} was refused: the role lacks the permission {permission} ({message})."
            )
        return ProviderPermissionDenied(f"{action} was refused by AWS: {message}")
    if is_not_found(error):
        return NotFound(f"{action}: not found ({message}).")
    if code in QUOTA_CODES:
        return ProviderError(
            f"{action}: an AWS quota is reached ({message}). Ask AWS for a higher quota or free capacity."
        )
    if code in CONFLICT_CODES:
        return Conflict(f"{action}: {message}")
    if code == "ValidationException":
        return ValidationFailed(f"{action} was refused by AWS: {message}")
    return ProviderError(f"{action} failed ({code}): {message}")


@contextmanager
def aws_call(action: str, *, permission: str | None = None) -> Iterator[None]:
    """Run AWS calls and raise the domain's errors for what fails."""
    try:
        yield
    except ClientError as error:
        raise translate(error, action=action, permission=permission) from error
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as error:
        raise ProviderTransientError(
            f"{action}: AWS could not be reached ({error}); try again shortly."
        ) from error
