"""Our hub for the benchmark: the local stack's (dev/jupyterhub_config.py, settings from the
environment bench/hubs.py gives it), with no cap on simultaneous spawns."""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub
load_subconfig(str(Path(__file__).resolve().parents[1] / "dev/jupyterhub_config.py"))  # noqa: F821

# The hub's default (100) would queue the 300 simultaneous spawns; 0: no limit.
c.JupyterHub.concurrent_spawn_limit = 0
# One user opens all the servers: no per-user caps either.
c.JupyterHub.named_server_limit_per_user = 0
c.BatchNotebookSpawner.max_queued_per_user = 0
# The benchmark reads which BatchNotebook serves each server from the server's state.
for role in c.JupyterHub.load_roles:
    if role["name"] == "dev-admin":
        role["scopes"].append("admin:server_state")
