"""Errors that the ingest service raises to its RPC callers."""

from nameko.exceptions import BadRequest, deserialize_to_instance


@deserialize_to_instance
class RunInProgress(Exception):
    """An ingestion run is already going on; try again when it ends."""


@deserialize_to_instance
class IngestFailed(Exception):
    """The ingestion run could not start or ended abnormally."""


@deserialize_to_instance
class InvalidArgument(BadRequest):
    """An RPC argument is out of range or of the wrong type."""


@deserialize_to_instance
class DatabaseUnavailable(Exception):
    """PostgreSQL did not answer in time; try again later."""
