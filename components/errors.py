"""Errors the product raises on purpose: each message is one line naming file, row or field."""


class OfflineRecallError(Exception):
    """Base class: the CLI prints the message as one line, without a traceback."""


class IngestError(OfflineRecallError):
    """The input cannot be ingested: missing, empty, unreadable, wrong format, too many bad rows."""


class StageError(OfflineRecallError):
    """A later stage found its input unusable (anomalies, no users, empty vocabulary...)."""
