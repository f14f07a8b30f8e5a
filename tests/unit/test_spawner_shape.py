"""The spawner overrides only what it means to: a helper named like one of JupyterHub's own
attributes silently changes the hub's behaviour (a method named `_failed` once made every new
spawner look failed and broke polling)."""

from jupyterhub.spawner import Spawner
from traitlets import HasTraits

from batchnotebook_spawner import BatchNotebookSpawner

INTENDED = {
    "start",
    "stop",
    "poll",
    "progress",
    "get_state",
    "load_state",  # a pod profile's server is followed again after a hub restart
    "clear_state",
    "get_url",  # a hub restarted while a job waited learns its address once it runs
    "options_from_query",  # query links fill in the form instead of spawning at once
    "_options_from_form",
}  # the last is the trait default of options_from_form


def test_overrides_only_the_spawner_api():
    traitlets_machinery = set(vars(HasTraits)) | {
        "_all_trait_default_generators",
        "_descriptors",
        "_instance_inits",
        "_static_immutable_initial_values",
        "_trait_default_generators",
        "_traits",
    }
    shadowed = {
        name
        for name in vars(BatchNotebookSpawner)
        if hasattr(Spawner, name) and not name.startswith("__")
    }
    assert shadowed - traitlets_machinery == INTENDED


def test_defaults_suit_batch_jobs(monkeypatch):
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner()
    assert spawner.poll_interval == 5  # poll() reads the shared watch, no scheduler traffic
    assert spawner.start_timeout >= 3600  # waiting in a queue is normal
    assert spawner.ip == "0.0.0.0"
    assert "PATH" not in spawner.env_keep
