"""Errors of the exporters: bad input and failed services, and a failed health probe."""


class ExportError(Exception):
    """An export could not be configured, started or stopped; the message says why and what to do."""


class ProbeFailure(Exception):
    """A health probe of a running export failed (exporters.probe); ``counts`` says whether it
    counts towards a restart (a refusal by the access rules does not). The supervisor retries."""

    def __init__(self, message: str, counts: bool = True) -> None:
        super().__init__(message)
        self.counts = counts
