"""The HTTP side of the job manager (``plugins.jobs``): response headers it asks for, and request context.

pygeoapi answers a refused execution (:class:`plugins.jobs.ServerBusyError`) with 503 and its OGC
exception body but cannot add headers to an error; :class:`JobResponseHints` adds ``Retry-After``
and drops the ``Location`` pygeoapi writes for a synchronous read-only run (no job is stored).

pygeoapi runs every API call with ``loop.run_in_executor``, which does not carry context variables
into the thread: :func:`use_context_executor` makes the loop's default executor copy the request's
context (principal, request id), so the manager and processes see who is asking.

pygeoapi 0.21 also answers every successful job deletion with a 500 (no headers); see
:func:`_answer_deletes_with_headers`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugins.jobs import RESPONSE_HINTS, ResponseHints


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A thread pool that runs each call in a copy of the submitter's context (as ``asyncio.to_thread``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


def use_context_executor(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor:
    """Make ``loop``'s default executor a :class:`ContextThreadPoolExecutor` (same size as asyncio's own)."""
    executor = ContextThreadPoolExecutor(thread_name_prefix="eofusion-api")
    loop.set_default_executor(executor)
    return executor


def _answer_deletes_with_headers() -> None:
    """Give pygeoapi's job deletion response its headers.

    pygeoapi 0.21's ``delete_job`` returns ``{}`` as headers on success, and its Starlette glue then
    fails on ``headers['Content-Type']`` (a 500 after the job was deleted). The wrapped function adds
    the headers every other API call returns.
    """
    from pygeoapi.api import SYSTEM_LOCALE
    from pygeoapi.api import processes as processes_api

    original = processes_api.delete_job
    if getattr(original, "eofusion_fixed", False):
        return

    def delete_job(api: Any, request: Any, job_id: str) -> tuple[dict[str, Any], int, Any]:
        headers, status, content = original(api, request, job_id)
        if "Content-Type" not in headers:
            headers = {**request.get_response_headers(SYSTEM_LOCALE, **api.api_headers), **headers}
        return headers, status, content

    delete_job.eofusion_fixed = True  # type: ignore[attr-defined]
    processes_api.delete_job = delete_job


class JobResponseHints:
    """ASGI wrapper of the OGC app: applies the job manager's :class:`plugins.jobs.ResponseHints`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        _answer_deletes_with_headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hints = ResponseHints()
        token = RESPONSE_HINTS.set(hints)

        async def send_with_hints(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if hints.job_stored or k.lower() != b"location"]
                if hints.retry_after is not None and message["status"] == 503:
                    headers.append((b"retry-after", str(hints.retry_after).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_hints)
        finally:
            RESPONSE_HINTS.reset(token)
