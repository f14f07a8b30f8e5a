"""The launcher really runs: it starts a server, finds the port that server listens on, and
reports it with the notebook's token. The stand-in server ignores the suggested port on purpose."""

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources

import pytest

LAUNCHER = str(resources.files("batchnotebook_operator") / "launcher.py")
STAND_IN = r"""
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("stand-in listening on", s.getsockname()[1], file=sys.stderr, flush=True)
time.sleep(float(sys.argv[1]))
"""


class Receiver:
    def __init__(self, status=200):
        self.reports = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.reports.append(
                    (self.path, self.headers["Authorization"], json.loads(self.rfile.read(length)))
                )
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/report/ns/nb"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def run_launcher(url, *command, timeout=30, extra=None):
    env = {
        **os.environ,
        **(extra or {}),
        "BATCHNOTEBOOK_REPORT_URL": url,
        "BATCHNOTEBOOK_REPORT_TOKEN": "t0ken",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:0/user/alice/",
    }
    return subprocess.run(
        [sys.executable, LAUNCHER, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_reports_the_port_really_listened_on_and_then_the_end(receiver):
    done = run_launcher(receiver.url, sys.executable, "-c", STAND_IN, "3")
    assert done.returncode == 0, done.stderr
    listened = int(done.stderr.split("stand-in listening on ")[1].split()[0])
    assert receiver.reports == [
        ("/v1/report/ns/nb", "Bearer t0ken", {"host": socket.gethostname(), "port": listened}),
        ("/v1/report/ns/nb/ended", "Bearer t0ken", {}),
    ]


def test_token_is_not_passed_to_jupyter(receiver):
    code = "import os, sys; sys.exit(7 if 'BATCHNOTEBOOK_REPORT_TOKEN' in os.environ else 0)"
    done = run_launcher(receiver.url, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr


def test_refused_report_stops_jupyter():
    refusing = Receiver(status=403)
    try:
        done = run_launcher(refusing.url, sys.executable, "-c", STAND_IN, "60")
    finally:
        refusing.close()
    assert "refused the report: HTTP 403" in done.stderr
    assert done.returncode != 0


SHOW_NODES = r"""
import json, os, stat, sys
path = os.environ["BATCHNOTEBOOK_NODEFILE"]
print(json.dumps({
    "nodes": os.environ["BATCHNOTEBOOK_NODES"],
    "file": open(path).read(),
    "mode": oct(stat.S_IMODE(os.stat(path).st_mode)),
    "path": path,
    "slurm": os.environ.get("SLURM_JOB_ID"),
    "path_variable": bool(os.environ.get("PATH")),
}))
"""


@pytest.mark.parametrize(
    ("variables", "file_text", "nodes"),
    [
        (
            {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "tx-c[1-2,09],gpu1"},
            None,
            "tx-c1 tx-c2 tx-c09 gpu1",
        ),
        ({}, "n1\nn1\nn2\nn2\n", "n1 n2"),  # PBS_NODEFILE: a line per process
        ({"LSB_HOSTS": "h1 h1 h2 h2"}, None, "h1 h2"),
    ],
)
def test_jupyter_gets_the_allocation_and_its_hosts(receiver, tmp_path, variables, file_text, nodes):
    if file_text is not None:
        (tmp_path / "nodefile").write_text(file_text)
        variables = {**variables, "PBS_NODEFILE": str(tmp_path / "nodefile")}
    done = run_launcher(receiver.url, sys.executable, "-c", SHOW_NODES, extra=variables)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["nodes"] == nodes and seen["file"] == nodes.replace(" ", "\n") + "\n"
    assert seen["mode"] == "0o600" and seen["path_variable"]
    assert seen["slurm"] == variables.get("SLURM_JOB_ID")  # the scheduler's variables are kept
    assert not os.path.exists(seen["path"])  # removed when Jupyter has exited


def test_grid_engines_host_file_and_no_scheduler_at_all(receiver, tmp_path):
    (tmp_path / "pe_hostfile").write_text(
        "n1.example 8 all.q@n1.example UNDEFINED\nn2 8 all.q@n2 UNDEFINED\n"
    )
    done = run_launcher(
        receiver.url,
        sys.executable,
        "-c",
        SHOW_NODES,
        extra={"PE_HOSTFILE": str(tmp_path / "pe_hostfile")},
    )
    assert json.loads(done.stdout)["nodes"] == "n1.example n2"
    alone = run_launcher(receiver.url, sys.executable, "-c", SHOW_NODES)
    assert json.loads(alone.stdout)["nodes"] == socket.gethostname()


def test_a_host_list_it_cannot_read_still_starts_jupyter(receiver):
    # A bracket without numbers (int() fails): Jupyter starts, with this host listed.
    done = run_launcher(
        receiver.url, sys.executable, "-c", SHOW_NODES, extra={"SLURM_JOB_NODELIST": "n[a-b]"}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"] == socket.gethostname()
