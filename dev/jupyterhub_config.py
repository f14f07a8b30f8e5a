"""JupyterHub for the process stacks of the end-to-end tests (`make dev` runs Zero to JupyterHub).

Everything site-specific comes from the environment devstack/hub.py gives the hub.
"""

import json
import os

import batchnotebook_spawner

env = os.environ
c = get_config()  # noqa: F821 - provided by JupyterHub

c.JupyterHub.bind_url = f"http://127.0.0.1:{env['PUBLIC_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env['HUB_PORT']}"
# Compute nodes call the hub API here (in production: the hub's service address they can reach).
c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{env['HUB_PORT']}"
c.JupyterHub.db_url = f"sqlite:///{env['STATE']}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{env['STATE']}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{env['STATE']}/run/hub.pid"
c.JupyterHub.cleanup_servers = False  # a hub restart keeps every server running
c.JupyterHub.allow_named_servers = True
# Queued spawns count against concurrent_spawn_limit for everyone: a few servers per user, of
# which at most BatchNotebookSpawner.max_queued_per_user (default 3) may wait in a queue.
c.JupyterHub.named_server_limit_per_user = 5

# The proxy runs on its own (devstack/hub.py) so that it outlives hub restarts.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['PROXY_API_PORT']}"

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = env["DEV_PASSWORD"]
c.Authenticator.allowed_users = {"alice", "bob"}

c.JupyterHub.spawner_class = "batchnotebook_spawner.BatchNotebookSpawner"
# The home page also says how long each batch server may still run.
c.JupyterHub.template_paths = [batchnotebook_spawner.TEMPLATES]
c.BatchNotebookSpawner.namespace = env["NAMESPACE"]
c.BatchNotebookSpawner.http_timeout = 120
# Servers as ordinary pods in this cluster (BatchNotebookSpawner.pod_profiles, as JSON); none by
# default.
c.BatchNotebookSpawner.pod_profiles = json.loads(env.get("POD_PROFILES") or "[]")

c.JupyterHub.services = [
    # The operator, reached by compute nodes through the hub's public URL.
    {
        "name": "batchnotebook",
        "url": f"http://127.0.0.1:{env['OPERATOR_PORT']}",
        "api_token": env["OPERATOR_SERVICE_TOKEN"],
        "display": False,
    },
    # What the tests use (their HUB_API_TOKEN).
    {"name": "dev-admin", "api_token": env["HUB_API_TOKEN"]},
]
# jupyterhub-idle-culler stops servers unused for IDLE_CULL_TIMEOUT seconds; stopping a batch
# server cancels its job, so an idle server gives its node back to the queue. devstack/hub.py
# runs it beside the hub (a hub-managed service would outlive a hub stopped within 15 s: the culler
# ignores the SIGINT the hub sends first), with this token.
c.JupyterHub.services.append({"name": "idle-culler", "api_token": env["IDLE_CULLER_TOKEN"]})
# The sweeper (batchnotebook_spawner.sweep, run beside the hub like the culler) deletes the
# BatchNotebooks of servers the hub forgot; it only reads which servers the hub has.
c.JupyterHub.services.append({"name": "sweeper", "api_token": env["SWEEPER_TOKEN"]})
c.JupyterHub.load_roles = [
    {"name": "sweeper", "services": ["sweeper"], "scopes": ["list:users", "read:servers"]},
    {
        "name": "idle-culler",
        "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    },
    {
        "name": "dev-admin",
        "services": ["dev-admin"],
        "scopes": [
            "admin:users",
            "admin:servers",
            "admin-ui",
            "list:users",
            "read:users",
            "servers",
            "access:servers",
            "tokens",
            "proxy",
            "shutdown",
        ],
    },
]
c.Application.log_level = env.get("HUB_LOG_LEVEL", "INFO")
