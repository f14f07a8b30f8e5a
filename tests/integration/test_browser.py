"""In a real browser (Debian's Chromium, driven by playwright): log in, follow a link that fills
in the spawn form, choose a profile card, set the CPUs, start, watch the progress page, land in
JupyterLab, stop the server and see the batch job end. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchnotebook_operator.schedulers.slurm import Slurm

from .browser import ARTIFACTS, browser_page, log_in
from .conftest import GROUP, VERSION
from .stack import HUB_PORT_BASE, STATE, squeue, wait_for
from .test_hub import hub_stack, job_of

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.e2e]
CLUSTER = "e2e-browser"


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(
        kubeconfig,
        custom,
        core,
        CLUSTER,
        "jupyterhub-browser",
        state=STATE / "hub-browser",
        port_base=HUB_PORT_BASE + 400,
    )


@pytest.fixture
def page() -> Iterator[object]:
    with browser_page() as page:
        yield page


def test_spawn_through_the_form_into_jupyterlab(hub, custom, page):
    # The job waits its turn for a while (a start time 20 s ahead: the scheduler's reason and
    # expected start), so the progress page goes through the queue; positions come with the
    # availability snapshot.
    waiting = Slurm.default_template().replace(
        "#!/bin/bash\n", "#!/bin/bash\n#SBATCH --begin=now+20\n", 1
    )
    custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        "batchclusters",
        CLUSTER,
        {"spec": {"jobTemplate": waiting, "availabilityIntervalSeconds": 2}},
    )
    hub.api("POST", "/users/alice")
    log_in(page, hub.url, "alice", hub.password)

    # A link chooses the card and fills in its inputs; the form waits for the user.
    page.goto(f"{hub.url}/hub/spawn?cluster={CLUSTER}&profile=small&cpus=2&partition=batch")
    card = f"#bnb-{CLUSTER}-small"
    assert page.is_checked(card)
    assert not page.is_visible(".spawn-error-msg")  # the hub's banner for failed options
    assert page.input_value(f"{card}-cpus") == "2"
    assert page.input_value(f"{card}-partition") == "batch"
    assert page.get_attribute(f"{card}-cpus", "max") == "2"
    page.click(f"label[for='bnb-{CLUSTER}-small']")
    page.fill(f"{card}-cpus", "1")
    page.screenshot(path=ARTIFACTS / "browser-spawn-form.png", full_page=True)
    page.click("form#spawn_form [type=submit]")

    page.wait_for_url("**/spawn-pending/alice**")
    page.wait_for_selector("#progress-message")
    queued = page.wait_for_function(
        "() => /position \\d+ of \\d+/.test(document.querySelector('#progress-message')"
        ".textContent)",
        timeout=60_000,
    )
    message = page.inner_text("#progress-message")
    assert queued and "waits in the queue" in message and "BeginTime" in message, message
    assert "expected to start" in message and "waited" in message, message
    page.screenshot(path=ARTIFACTS / "browser-progress.png", full_page=True)
    page.wait_for_url("**/user/alice/**", timeout=180_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)  # JupyterLab's shell
    page.screenshot(path=ARTIFACTS / "browser-jupyterlab.png")

    notebook = job_of(custom, hub.namespace, "alice")
    assert notebook["spec"]["resources"]["cpus"] == 1
    assert notebook["spec"]["resources"]["partition"] == "batch"
    job_name = f"bnb-{notebook['metadata']['uid']}"
    assert [j["state"] for j in squeue(job_name)] == ["RUNNING"]

    # The home page says how long the server may still run (the profile's 1 h walltime).
    page.goto(f"{hub.url}/hub/home")
    time_left = page.inner_text(".bnb-time-left-value")
    assert time_left.startswith(("59 min left", "1 h left")) and "(until" in time_left
    page.screenshot(path=ARTIFACTS / "browser-home-time-left.png", full_page=True)
    page.click("#stop")  # the control panel's button, which calls the REST API
    wait_for(lambda: hub.server("alice") is None, 120, "the hub to see the server stopped")
    wait_for(
        lambda: all(j["state"] not in ("RUNNING", "PENDING") for j in squeue(job_name)),
        120,
        "the batch job to end",
    )
