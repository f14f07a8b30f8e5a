"""A server's BatchNotebook and Secret as the API server has them, not the watch's cache: read
them, and delete them even across an API server restart."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiException

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION

# Backoff between tries of a deletion the API server did not take, and the most one try may
# wait for an answer (seconds): kubernetes_asyncio waits forever on a stalled connection.
FIRST_RETRY = 0.5
LAST_RETRY = 5.0
ONE_TRY = 30.0
# What a request raises when no answer came (refused, reset, timed out).
NO_ANSWER = (aiohttp.ClientError, OSError, TimeoutError)
# What a request to the API server may raise when it did not decide anything.
API_ERRORS = (ApiException, *NO_ANSWER)


def unanswered(error: BaseException) -> bool:
    """The API server did not answer, or is overloaded or restarting: a later try may work."""
    if isinstance(error, ApiException):
        return error.status in (429, 500, 502, 503, 504) or (
            error.status == 404 and not named_in(error)
        )
    return isinstance(error, NO_ANSWER)


def named_in(error: ApiException) -> str | None:
    """The object an API error is about. A restarted API server answers 404 with no name while
    it has not yet registered our resource type: that one says nothing of the notebook."""
    try:
        details = json.loads(error.body or "{}").get("details") or {}
    except (ValueError, AttributeError):
        return None
    return details.get("name")


def names_it(error: ApiException, name: str) -> bool:
    """A 404 about this very object: it does not exist."""
    return error.status == 404 and named_in(error) == name


async def read_notebook(custom: Any, namespace: str, name: str) -> dict | None:
    """A notebook as the API server has it, not the cache (None: there is none)."""
    try:
        return await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, NOTEBOOKS, name)
    except ApiException as error:
        if names_it(error, name):
            return None
        raise


async def delete_notebook(
    custom: Any, core: Any, namespace: str, name: str, secret: str, uid: str | None = None
) -> None:
    """A notebook and its Secret; either may be gone already. With a uid, only that notebook and
    the Secret it owns: a server started since under the same name keeps both (the API server
    answers 409 to the precondition, taken as done)."""
    body = {"preconditions": {"uid": uid}} if uid else None
    try:
        await custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, NOTEBOOKS, name,
                                                     body=body)  # fmt: skip
    except ApiException as error:
        if not (names_it(error, name) or (uid and error.status == 409)):
            raise
    if uid:
        await delete_owned_secret(core, namespace, secret, uid)
    else:
        await ignore_missing(core.delete_namespaced_secret, secret, namespace)


async def delete_owned_secret(core: Any, namespace: str, name: str, owner_uid: str) -> None:
    """The Secret, if the notebook OWNER_UID owns it (not one a new notebook of the same name
    was just given), by its own uid."""
    try:
        secret = await core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return
        raise
    if any(ref.uid == owner_uid for ref in secret.metadata.owner_references or ()):
        body = {"preconditions": {"uid": secret.metadata.uid}}
        await ignore_missing(core.delete_namespaced_secret, name, namespace, body=body)


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
    nobody (found by the chaos campaign); past the deadline the sweeper (sweep.py) deletes it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    pause = FIRST_RETRY
    while True:
        one_try = min(ONE_TRY, max(deadline - loop.time(), 1.0))
        try:
            await asyncio.wait_for(delete_notebook(custom, core, namespace, name, secret), one_try)
            return True
        except Exception as error:
            if not unanswered(error):
                log.exception("cannot delete %s", name)  # JupyterHub would not say it
                raise
            if loop.time() + pause > deadline:
                log.error("gave up deleting %s after %.0f s: %r", name, give_up_after, error)
                return False
            log.warning("deleting %s: the API server did not answer (%r), retrying", name, error)
        await asyncio.sleep(pause)
        pause = min(pause * 2, LAST_RETRY)


async def ignore_missing(method: Any, *args: Any, **kwargs: Any) -> None:
    """An API call whose 404 is as good as its success (a deletion)."""
    try:
        await method(*args, **kwargs)
    except ApiException as error:
        if error.status != 404:
            raise
