"""Errors that the ingest service raises to its RPC callers."""

from nameko.exceptions import BadRequest, deserialize_to_instance

from services.common.errors import ServiceUnavailable, ValidationFailed


@deserialize_to_instance
class RunInProgress(Exception):
    """An ingestion run is already going on; try again when it ends."""


@deserialize_to_instance
class IngestFailed(Exception):
    """The ingestion run could not start or ended abnormally."""


@deserialize_to_instance
class InvalidArgument(ValidationFailed, BadRequest):
    """An RPC argument is out of range or of the wrong type.

    ``fields`` maps each bad argument to a message key, so the gateway
    answers with a ``validation_error`` envelope that names the field.
    """


@deserialize_to_instance
class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL did not answer in time; try again later."""
