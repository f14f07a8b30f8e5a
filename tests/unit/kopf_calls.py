"""The operator's kopf handlers called the way kopf calls them, for the unit tests."""

from __future__ import annotations

import kopf

from batchnotebook_operator.handlers import notebooks


async def submit(body: kopf.Body, cluster: dict, retry: int = 0) -> None:
    """notebooks.submit for a new BatchNotebook `body` on the BatchCluster "c" (`cluster`)."""
    meta = body["metadata"]
    await notebooks.submit(
        body=body,
        spec=body.spec,
        status=body.status,
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        retry=retry,
        reason=kopf.Reason.CREATE,
        clusters_by_name={"c": [cluster]},
        logger=None,
    )
