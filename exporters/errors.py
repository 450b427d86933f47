"""The one exception the exporters raise for bad input and failed services."""


class ExportError(Exception):
    """An export could not be configured, started or stopped; the message says why and what to do."""
