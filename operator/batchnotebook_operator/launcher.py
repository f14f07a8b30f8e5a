"""Runs on the compute node inside the job: starts Jupyter, finds the port it really listens on,
and reports host and port to the operator. Standard library only, because nothing but Jupyter is
installed there; the job script embeds this file and runs it with the node's Python.

Usage: python launcher.py JUPYTER-COMMAND [ARGS...]
When Jupyter has exited, the launcher says so at REPORT_URL/ended: the operator then asks the
scheduler at once instead of at its next poll (the scheduler's answer, not this word, decides).
Environment: BATCHNOTEBOOK_REPORT_URL, BATCHNOTEBOOK_REPORT_TOKEN (removed before Jupyter starts);
BATCHNOTEBOOK_STOP_AFTER (optional): seconds after which Jupyter gets SIGTERM, so that it shuts
down cleanly before the scheduler kills the job at its walltime; BATCHNOTEBOOK_ENV_FILE
(optional): the private file holding the server's environment (its tokens, as a JSON object),
which the launcher reads and deletes first of all (see envfile.py).
Jupyter gets the job's whole environment (the scheduler's variables: srun in a terminal uses the
allocation) and BATCHNOTEBOOK_NODES, the allocation's hosts (Jupyter's first), and
BATCHNOTEBOOK_NODEFILE, a private file of them one a line: one name on every scheduler.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
RETRYABLE_HTTP = {408, 409, 425, 429, 500, 502, 503, 504}
REPORT_DEADLINE = 600  # seconds to keep trying to reach the operator
ENDED_TRIES = 3  # the job is ending: a few quick tries, never holding it up for long
ENDED_TIMEOUT = 5
STOP_WAIT = 0.5  # seconds between two checks of the walltime deadline
# Set when the scheduler runs a job a second time. Templates ask for no requeue, but slurmrestd
# may keep a job requeueable: a notebook never starts twice (the hub would not know of it).
RERUN_COUNTERS = ("SLURM_RESTART_COUNT",)
# Where each scheduler lists the allocation's hosts, this one first; the first set wins. "file":
# a host at the start of each line, a line per slot or process (PBS, LSF) or per host with its
# slots after it (Grid Engine); "list": separated by spaces, once per slot; "hostlist": Slurm's.
NODE_SOURCES = (
    ("PE_HOSTFILE", "file"),
    ("PBS_NODEFILE", "file"),
    ("LSB_DJOB_HOSTFILE", "file"),
    ("LSB_HOSTS", "list"),
    ("SLURM_JOB_NODELIST", "hostlist"),
)


def say(message):
    print(f"[batchnotebook {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    # A hint only: Jupyter moves to another port if this one is taken meanwhile, and the port
    # reported is the one it really listens on.
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def with_port(service_url, port):
    parts = urllib.parse.urlsplit(service_url)
    host = parts.hostname or "0.0.0.0"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def descendants(root):
    """Pids of root and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def listening_ports(pid):
    """TCP ports the process tree of pid listens on, those on all interfaces first."""
    inodes = socket_inodes(descendants(pid))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                        address, port = fields[1].rsplit(":", 1)
                        loopback = address in ("0100007F", "00000000000000000000000001000000")
                        ports.append((loopback, int(port, 16)))
        except OSError:
            continue
    return [port for _, port in sorted(set(ports))]


def expand_hostlist(text):
    """Slurm's compressed host list, e.g. "tx-c[1-2,09],gpu1": tx-c1 tx-c2 tx-c09 gpu1."""
    hosts = []
    for name in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", text):  # the commas outside brackets
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", name)
        if not match:
            hosts.append(name)
            continue
        prefix, ranges, rest = match.groups()
        for part in ranges.split(","):
            low, _dash, high = part.partition("-")
            for number in range(int(low), int(high or low) + 1):
                tails = expand_hostlist(rest) if rest else [""]
                hosts.extend(f"{prefix}{number:0{len(low)}d}{tail}" for tail in tails)
    return hosts


def allocation_hosts():
    """The hosts of the job's allocation, each once, in the scheduler's order (this one first);
    this host alone where the scheduler lists none."""
    for variable, form in NODE_SOURCES:
        value = os.environ.get(variable, "")
        if not value:
            continue
        if form == "file":
            try:
                with open(value) as file:
                    names = [line.split()[0] for line in file if line.strip()]
            except OSError as error:
                say(f"cannot read ${variable} ({value}): {error}")
                continue
        else:
            names = value.split() if form == "list" else expand_hostlist(value)
        if names:
            return list(dict.fromkeys(names))
    return [socket.gethostname()]


def publish_nodes():
    """BATCHNOTEBOOK_NODES and BATCHNOTEBOOK_NODEFILE for Jupyter; the file's path. mkstemp
    makes the file 0600: host names only, but the user's own."""
    try:
        hosts = allocation_hosts()
    except (OSError, ValueError) as error:  # a host list it cannot read must not stop Jupyter
        say(f"cannot read the allocation's hosts ({error}): only this one is listed")
        hosts = [socket.gethostname()]
    os.environ["BATCHNOTEBOOK_NODES"] = " ".join(hosts)
    try:
        descriptor, path = tempfile.mkstemp(prefix="batchnotebook-nodes-")
        with os.fdopen(descriptor, "w") as file:
            file.write("".join(f"{host}\n" for host in hosts))
    except OSError as error:
        say(f"no node file ({error}): BATCHNOTEBOOK_NODES lists the hosts")
        return None
    os.environ["BATCHNOTEBOOK_NODEFILE"] = path
    return path


def post(url, token, body):
    return urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


def report(url, token, host, port, child):
    request = post(url, token, {"host": host, "port": port})
    deadline, delay = time.monotonic() + REPORT_DEADLINE, 1.0
    while child.poll() is None:
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                say(f"reported {host}:{port}: HTTP {answer.status}")
                return True
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            if error.code not in RETRYABLE_HTTP:
                say(f"the operator refused the report: HTTP {error.code} {detail}")
                return False
            say(f"report not accepted yet (HTTP {error.code} {detail}), retrying")
        except (urllib.error.URLError, OSError) as error:
            say(f"cannot reach {url}: {error}, retrying")
        if time.monotonic() > deadline:
            say(f"gave up reporting after {REPORT_DEADLINE} s")
            return False
        time.sleep(delay)
        delay = min(delay * 2, 15)
    return False


def report_ended(url, token):
    """Tell the operator that Jupyter has exited, so that the job's end shows without waiting
    for the next poll. Best effort: the poll sees the end anyway."""
    for attempt in range(ENDED_TRIES):
        if attempt:
            time.sleep(attempt)
        try:
            with urllib.request.urlopen(post(f"{url}/ended", token, {}), timeout=ENDED_TIMEOUT):
                say("told the operator that Jupyter exited")
                return
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_HTTP:
                return  # e.g. 410: the notebook has ended already
        except (urllib.error.URLError, OSError):
            pass


def wait_until_stopped(child, stop_at):
    """Wait for Jupyter; at stop_at (monotonic, or None: never) send it SIGTERM. Returns its exit
    code and whether the walltime stopped it."""
    while stop_at is not None and child.poll() is None:
        if time.monotonic() >= stop_at:
            say("the walltime is about to end: stopping Jupyter so that it shuts down cleanly")
            child.terminate()
            code = child.wait()
            say(f"Jupyter stopped before the walltime ended (exit {code})")
            return code, True
        time.sleep(STOP_WAIT)
    return child.wait(), False


def staged_environment():
    """The server's environment from the file the operator staged, which is deleted at once,
    whether or not it could be read: the tokens stay on disk only until the job starts."""
    path = os.environ.pop("BATCHNOTEBOOK_ENV_FILE", "")
    if not path:
        return {}
    try:
        with open(path) as file:
            values = json.load(file)
    except (OSError, ValueError) as error:
        say(
            f"cannot read the notebook's environment from {path}: {error} (the home directory "
            "must be shared by login and compute nodes, and a job started twice finds it gone)"
        )
        return None
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            say(f"cannot delete {path}: {error}")
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        say(f"{path} does not hold a JSON object of strings")
        return None
    return values


def main(command):
    staged = staged_environment()
    if staged is None:
        return 1
    os.environ.update(staged)
    reruns = [name for name in RERUN_COUNTERS if os.environ.get(name, "0") not in ("", "0")]
    if reruns:
        say(f"the scheduler runs this job again ({reruns[0]}): a notebook is never started twice")
        return 1
    url = os.environ.pop("BATCHNOTEBOOK_REPORT_URL")
    token = os.environ.pop("BATCHNOTEBOOK_REPORT_TOKEN")
    stop_after = os.environ.pop("BATCHNOTEBOOK_STOP_AFTER", "")
    stop_at = time.monotonic() + float(stop_after) if stop_after else None
    hint = free_port()
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/")
    os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(service_url, hint)
    say(f"starting {command[0]} on {socket.gethostname()}, port {hint} suggested")
    if stop_at is not None:
        say(f"Jupyter will be stopped in {stop_after} s, before the walltime ends")
    node_file = publish_nodes()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda s, _frame: child.send_signal(s))

    port = None
    while child.poll() is None and port is None:
        ports = listening_ports(child.pid)
        port = hint if hint in ports else (ports[0] if ports else None)
        if port is None:
            time.sleep(0.2)
    if port is not None and not report(url, token, socket.gethostname(), port, child):
        child.terminate()
    code, stopped_in_time = wait_until_stopped(child, stop_at)
    say(f"{command[0]} exited with {code}")
    if node_file is not None:
        with contextlib.suppress(FileNotFoundError):  # the user's to delete too
            os.unlink(node_file)
    report_ended(url, token)
    if stopped_in_time:
        return 0  # a clean stop we asked for, not a failure of the job
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
