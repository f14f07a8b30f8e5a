"""The hub's home page says how long each batch server may still run."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import jinja2
import jupyterhub

from batchnotebook_spawner import TEMPLATES
from batchnotebook_spawner.home import time_left_text

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def test_time_left_reads_like_a_person_says_it():
    assert time_left_text("2026-11-23T13:20:00Z", NOW) == "1 h 20 min left (until 13:20 UTC)"
    assert time_left_text("2026-11-23T12:00:40Z", NOW) == "40 s left (until 12:00 UTC)"
    assert time_left_text("2026-11-23T11:59:00Z", NOW) == "time is up (at 11:59 UTC)"
    assert time_left_text(None, NOW) == ""


def render_home(spawners: list) -> str:
    """Our home.html over JupyterHub's own, loaded the way the hub loads them (only the page
    frame around the main block is left out: it needs the running hub)."""
    share = jupyterhub.__file__.rsplit("/lib/", 1)[0] + "/share/jupyterhub/templates"
    loader = jinja2.ChoiceLoader(
        [
            jinja2.DictLoader({"page.html": "{% block main %}{% endblock %}"}),
            jinja2.FileSystemLoader([TEMPLATES]),
            jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader([share])}),
            jinja2.FileSystemLoader([share]),
        ]
    )
    env = jinja2.Environment(loader=loader, autoescape=True)
    user = SimpleNamespace(name="alice", all_spawners=lambda include_default=True: spawners)
    return env.get_template("home.html").render(user=user, default_server=spawners[0])


def spawner(name: str, time_left: str | None) -> SimpleNamespace:
    batch = {"batch_time_left": time_left} if time_left is not None else {}
    return SimpleNamespace(
        name=name, user_options={"cluster": "hpc"}, active=True, ready=True, **batch
    )


def test_the_home_page_lists_the_servers_that_have_a_time_limit():
    html = render_home(
        [spawner("", "1 h left (until 13:00 UTC)"), spawner("gpu", ""), spawner("pod", None)]
    )
    assert "Time left" in html and "1 h left (until 13:00 UTC)" in html
    assert '<tr data-server-name="">' in html and "<td>default</td>" in html
    assert 'data-server-name="gpu"' not in html and 'data-server-name="pod"' not in html


def test_without_a_time_limit_the_page_is_jupyterhubs_own():
    html = render_home([spawner("", "")])
    assert "My Server" in html and "Time left" not in html
