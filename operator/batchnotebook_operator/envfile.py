"""The server's environment (its API token, the report token) staged in a private file, never in
the job script: schedulers keep scripts where others may read them (`sacct -B` with job_script
accounting, `bjobs -l`, HTCondor's staged executables).

The file lives in the user's home, which login and compute nodes share:
`~/.batchnotebook/env/<notebook uid>`, mode 0600 in a 0700 directory, written as the user
through the cluster's transport with the values on standard input (never on a command line).
The job script carries only its path; the launcher reads it and deletes it before Jupyter
starts, the script's exit trap deletes it if the job ends before that, and deleting a notebook
whose job never started deletes it too. "Home" is the passwd database's, on both sides (never
$HOME, which the run-as prefix and the scheduler may set differently).
"""

from __future__ import annotations

import json
import re
import shlex

from batchnotebook_api.errors import InvalidOptions

#: Where the files live, relative to the user's home.
DIRECTORY = ".batchnotebook/env"
#: What the launcher reads the file's path from.
PATH_VARIABLE = "BATCHNOTEBOOK_ENV_FILE"
# A Kubernetes uid is a UUID; whatever it is, it must stay one file name inside DIRECTORY.
UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
HOME = '"$(getent passwd "$(id -u)" | cut -d: -f6)"'

# Run as the user with the uid as $1; the values arrive on stdin. umask 077 and rm first: a file
# left by an earlier attempt is recreated, never reused with its old mode.
WRITE = (
    f"set -e; umask 077; home={HOME}; "
    'cd "${home:?has no home directory in the passwd database}"; '
    f"mkdir -p {DIRECTORY}; chmod 700 {DIRECTORY}; "
    f'rm -f -- "{DIRECTORY}/$1"; cat > "{DIRECTORY}/$1"'
)
REMOVE = f'set -e; home={HOME}; cd "${{home:?has no home directory}}"; rm -f -- "{DIRECTORY}/$1"'


def checked_uid(uid: str) -> str:
    if not UID.fullmatch(uid):
        raise InvalidOptions(f"notebook uid {uid!r} cannot name an environment file")
    return uid


def write_argv(uid: str) -> list[str]:
    """The fixed command that stores the environment (given on stdin) for notebook `uid`."""
    return ["sh", "-c", WRITE, "batchnotebook-env", checked_uid(uid)]


def remove_argv(uid: str) -> list[str]:
    return ["sh", "-c", REMOVE, "batchnotebook-env", checked_uid(uid)]


def content(environment: dict[str, str]) -> str:
    """What the file holds: JSON, which the launcher (standard library only) reads as it is."""
    return json.dumps(environment, sort_keys=True)


def script_lines(uid: str) -> str:
    """The job script's part: the file's path (no value from it) and the trap that deletes it
    if the job ends before the launcher has (exec replaces the shell, and with it the trap)."""
    return (
        "# The server's environment (its tokens) waits in a file only the user can read, never in\n"
        "# this script: the launcher reads and deletes it before Jupyter starts.\n"
        f"{PATH_VARIABLE}={HOME}/{DIRECTORY}/{shlex.quote(uid)}\n"
        f"export {PATH_VARIABLE}\n"
        f"trap 'rm -f -- \"${PATH_VARIABLE}\"' EXIT"
    )
