"""batchspawner 1.3.0's SlurmSpawner for the benchmark, on the same Slurm, partition and stand-in
server as ours; every Slurm command through the counting wrappers (bench/counting.py).  Settings
come from the environment bench/hubs.py gives it."""

import os

env = os.environ
c = get_config()  # noqa: F821 - provided by JupyterHub

c.JupyterHub.bind_url = f"http://127.0.0.1:{env['PUBLIC_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env['HUB_PORT']}"
c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{env['HUB_PORT']}"
c.JupyterHub.db_url = f"sqlite:///{env['STATE']}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{env['STATE']}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{env['STATE']}/run/hub.pid"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.concurrent_spawn_limit = 0  # as on our hub: no cap on simultaneous spawns
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['PROXY_API_PORT']}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = env["DEV_PASSWORD"]
c.Authenticator.allowed_users = {"alice"}
c.JupyterHub.services = [{"name": "dev-admin", "api_token": env["HUB_API_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "dev-admin",
        "services": ["dev-admin"],
        "scopes": ["admin:users", "admin:servers", "admin:server_state", "list:users", "servers"],
    }
]

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
bin_directory = env["BENCH_BIN"]
# batchspawner's own commands, with the tools' paths through the counting wrappers.
c.SlurmSpawner.batch_submit_cmd = f"{bin_directory}/sbatch --parsable"
c.SlurmSpawner.batch_query_cmd = f"{bin_directory}/squeue -h -j {{job_id}} -o '%T %B'"
c.SlurmSpawner.batch_cancel_cmd = f"{bin_directory}/scancel {{job_id}}"
venv = env["BATCHSPAWNER_VENV"]
c.SlurmSpawner.batchspawner_singleuser_cmd = f"{venv}/bin/batchspawner-singleuser"
# JupyterHub 6 no longer passes PATH to the job: srun inside it would find nothing.
c.SlurmSpawner.req_keepvars_extra = "PATH"
c.SlurmSpawner.req_partition = env["PARTITION"]
c.SlurmSpawner.req_memory = "8M"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_runtime = "01:00:00"
c.SlurmSpawner.req_options = "--account=research"
c.Spawner.cmd = [env["STAND_IN"]]
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 600
c.Application.log_level = "INFO"
