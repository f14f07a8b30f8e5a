"""A user in headless Chromium on the hub from Zero to JupyterHub's chart (z2jh.py), through the
proxy's NodePort as from outside the cluster: logs in, picks a Slurm profile, waits in the
queue, lands in JupyterLab and stops; then the same with the pod profile. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from devstack.deploy import NOTEBOOKS

from ..browser import ARTIFACTS, browser_page, log_in
from ..stack import squeue, wait_for
from .z2jh import POD_PROFILE, pods_of, server_of

pytestmark = [pytest.mark.node, pytest.mark.slurm, pytest.mark.e2e]
USER = "bob"  # a Unix account on the cluster (dev/slurm.sh)
QUEUED = "waits in the queue"  # the progress message of a job in the queue


@pytest.fixture
def page(z2jh) -> Iterator[Any]:
    with browser_page() as page:
        log_in(page, z2jh.url, USER, z2jh.password)
        yield page
    # A test that failed half-way leaves no server behind for the next one.
    if server_of(z2jh, USER):
        z2jh.api("DELETE", f"/users/{USER}/server")
        wait_for(lambda: server_of(z2jh, USER) is None, 180, f"{USER}'s server to stop")


def spawn_from_the_form(page: Any, url: str, card: str) -> None:
    page.goto(f"{url}/hub/spawn")
    page.click(f"label[for='{card}']")
    assert page.is_checked(f"#{card}")
    page.click("form#spawn_form [type=submit]")


def progress_until_it_moves_on(page: Any, screenshot: str) -> list[str]:
    """The progress page's messages, each once, until the browser leaves the page; a screenshot
    when it first says that the job waits in the queue."""
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while "/spawn-pending/" in page.url and time.monotonic() < deadline:
        try:
            message = page.inner_text("#progress-message", timeout=2_000)
        except PlaywrightError:  # the page moved on
            break
        if message not in seen:
            if QUEUED in message and not any(QUEUED in m for m in seen):
                page.screenshot(path=ARTIFACTS / screenshot, full_page=True)
            seen.append(message)
        page.wait_for_timeout(500)
    return seen


def lands_in_jupyterlab(page: Any, screenshot: str) -> None:
    page.wait_for_url(f"**/user/{USER}/**", timeout=240_000)
    # JupyterLab has loaded (its splash gone) and opened its launcher.
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    page.screenshot(path=ARTIFACTS / screenshot)


def stop_from_the_home_page(page: Any, z2jh) -> None:
    page.goto(f"{z2jh.url}/hub/home")
    # The button calls the REST API from home.js, which require.js may bind after the page has
    # loaded: a click before that does nothing (a CI run waited 180 s for a stop never sent).
    wait_for(lambda: stop_button_answered(page), 30, "the home page's stop button to answer")
    wait_for(lambda: server_of(z2jh, USER) is None, 180, f"{USER}'s server to stop")


def stop_button_answered(page: Any) -> bool:
    """Click Stop unless it has answered: home.js's handler disables Start while it sends the
    stop, and hides Stop once the hub has taken it."""
    if page.is_hidden("#stop") or page.get_attribute("#start", "disabled") is not None:
        return True
    page.click("#stop")
    page.wait_for_timeout(1_000)
    return False


def test_a_slurm_profile_from_the_browser_waits_in_the_queue_then_opens_jupyterlab(
    z2jh, late_cluster, page
):
    spawn_from_the_form(page, z2jh.url, f"bnb-{late_cluster}-small")
    page.wait_for_url(f"**/spawn-pending/{USER}**")
    messages = progress_until_it_moves_on(page, "z2jh-browser-queued.png")
    queued = [m for m in messages if QUEUED in m]
    assert queued and "BeginTime" in queued[0], messages
    lands_in_jupyterlab(page, "z2jh-browser-jupyterlab-slurm.png")

    items = json.loads(z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
    [notebook] = [n for n in items if (n["spec"]["hubUser"], n["spec"]["serverName"]) == (USER, "")]
    assert notebook["spec"]["clusterName"] == late_cluster
    tag = f"bnb-{notebook['metadata']['uid']}"
    assert [j["state"] for j in squeue(tag)] == ["RUNNING"]

    stop_from_the_home_page(page, z2jh)
    wait_for(lambda: all(j["state"] != "RUNNING" for j in squeue(tag)), 120, "the job to end")


def test_a_pod_profile_from_the_browser_opens_jupyterlab_in_a_pod(z2jh, page):
    spawn_from_the_form(page, z2jh.url, f"bnb-pod-{POD_PROFILE}")
    lands_in_jupyterlab(page, "z2jh-browser-jupyterlab-pod.png")

    assert [p["status"]["phase"] for p in pods_of(z2jh, USER)] == ["Running"]
    stop_from_the_home_page(page, z2jh)
    wait_for(lambda: not pods_of(z2jh, USER), 120, f"{USER}'s pod to be deleted")
