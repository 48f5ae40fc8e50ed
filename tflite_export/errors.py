"""The exporter's one error type."""


class ExportError(ValueError):
    """A model, input or artifact that cannot be exported; the message names the culprit."""
