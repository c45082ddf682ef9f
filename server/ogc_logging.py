"""pygeoapi logs every exception it answers at ERROR with its traceback, a client's 400 or 404 included: under
a fuzzer that is thousands of tracebacks that bury the one real bug. This filter keeps the log for server faults.
"""

from __future__ import annotations

import logging

from eofusion.errors import EOFusionError, status_of

#: The logger of ``pygeoapi.api.API.get_exception``, which writes the log line of every error answer.
PYGEOAPI_API_LOGGER = "pygeoapi.api"


def answered_status(exc: BaseException | None) -> int | None:
    """The HTTP status an exception is answered with: pygeoapi's ``http_status_code``, or the one status map."""
    if exc is None:
        return None
    status = getattr(exc, "http_status_code", None)
    if status is not None:
        return int(status)
    return status_of(exc) if isinstance(exc, EOFusionError) else None


class ClientErrorFilter(logging.Filter):
    """Drop pygeoapi's log lines of exceptions answered with a 4xx; keep everything else as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName != "get_exception" or not record.exc_info:
            return True
        status = answered_status(record.exc_info[1])
        return status is None or status >= 500


def install_client_error_filter() -> None:
    """Attach :class:`ClientErrorFilter` to pygeoapi's API logger once per process."""
    logger = logging.getLogger(PYGEOAPI_API_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
