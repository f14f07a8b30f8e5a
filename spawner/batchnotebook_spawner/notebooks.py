"""A server's BatchNotebook and Secret as the API server has them, not the watch's cache: read
them, and delete them even across an API server restart."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiException

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION

# Backoff between tries of a deletion the API server did not take (seconds).
FIRST_RETRY = 0.5
LAST_RETRY = 5.0


def unanswered(error: BaseException) -> bool:
    """The API server did not answer, or is overloaded or restarting: a later try may work."""
    if isinstance(error, ApiException):
        return error.status in (429, 500, 502, 503, 504)
    return isinstance(error, (aiohttp.ClientError, OSError, TimeoutError))


async def read_notebook(custom: Any, namespace: str, name: str) -> dict | None:
    """A notebook as the API server has it, not the cache (None: there is none)."""
    try:
        return await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, NOTEBOOKS, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


async def delete_notebook(
    custom: Any, core: Any, namespace: str, name: str, secret: str, uid: str | None = None
) -> None:
    """A notebook and its Secret; either may be gone already. With a uid, only that notebook: one
    made since under the same name stays (the API server answers 409, taken as done)."""
    body = {"preconditions": {"uid": uid}} if uid else None
    try:
        await ignore_missing(custom.delete_namespaced_custom_object, GROUP, VERSION, namespace,
                             NOTEBOOKS, name, body=body)  # fmt: skip
    except ApiException as error:
        if not (uid and error.status == 409):
            raise
        return  # the Secret is the new notebook's
    await ignore_missing(core.delete_namespaced_secret, secret, namespace)


async def delete_until_taken(
    custom: Any,
    core: Any,
    namespace: str,
    name: str,
    secret: str,
    give_up_after: float,
    log: logging.Logger | logging.LoggerAdapter,
) -> bool:
    """delete_notebook, tried again while the API server does not answer, for up to GIVE_UP_AFTER
    seconds; False if it never did. The hub forgets a server whose stop() raised, without a word,
    so a deletion lost to an API server restart would leave the notebook and its job running for
    nobody (found by the chaos campaign)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    pause = FIRST_RETRY
    while True:
        try:
            await delete_notebook(custom, core, namespace, name, secret)
            return True
        except Exception as error:
            if not unanswered(error):
                raise
            if loop.time() + pause > deadline:
                log.error("gave up deleting %s after %.0f s: %s", name, give_up_after, error)
                return False
            log.warning("deleting %s: the API server did not answer (%s), retrying", name, error)
        await asyncio.sleep(pause)
        pause = min(pause * 2, LAST_RETRY)


async def ignore_missing(method: Any, *args: Any, **kwargs: Any) -> None:
    """An API call whose 404 is as good as its success (a deletion)."""
    try:
        await method(*args, **kwargs)
    except ApiException as error:
        if error.status != 404:
            raise
