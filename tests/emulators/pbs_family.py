"""What PBS Pro's qsub, Torque's qsub and Moab's msub share: the option syntax, the job script on
stdin or as an operand, `#PBS` directives read from the script's leading comment block (the
command line wins over a directive), and `-l` resource lists. Standard library only."""

from __future__ import annotations

import getopt
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core import parse_duration

#: What qsub copies from its own environment into the job's Variable_List as PBS_O_<NAME>.
CARRIED_VARIABLES = ("HOME", "LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ")


class UsageError(Exception):
    """The options do not parse; the message is the tool's own complaint."""


@dataclass
class Submission:
    """A parsed qsub/msub command line plus the directives in its script."""

    script: str
    name: str = ""
    queue: str = ""
    account: str = ""
    project: str = ""
    output_path: str = ""
    error_path: str = ""
    join: str = "n"
    resources: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    #: `-W name=value` additional attributes (Torque's `x=QOS:name` scheduler extension)
    additional: dict[str, str] = field(default_factory=dict)
    export_all: bool = False
    quiet: bool = False
    hold: bool = False
    #: options seen in order, as `Submit_arguments` shows them
    arguments: list[str] = field(default_factory=list)

    @property
    def walltime_seconds(self) -> int | None:
        value = self.resources.get("walltime")
        return parse_duration(value) if value else None

    def chunk(self) -> dict[str, str]:
        """The first select chunk (PBS Pro `select=1:ncpus=2:mem=1gb`) as a dict."""
        select = self.resources.get("select", "")
        parts = select.split("+", 1)[0].split(":") if select else []
        chunk = {"count": parts[0]} if parts and parts[0].isdigit() else {}
        for part in parts:
            if "=" in part:
                key, value = part.split("=", 1)
                chunk[key] = value
        return chunk

    def nodes_spec(self) -> dict[str, str]:
        """Torque's `nodes=1:ppn=2:gpus=1` as a dict."""
        nodes = self.resources.get("nodes", "")
        parts = nodes.split("+", 1)[0].split(":") if nodes else []
        spec = {"count": parts[0]} if parts and parts[0].isdigit() else {}
        for part in parts:
            if "=" in part:
                key, value = part.split("=", 1)
                spec[key] = value
        return spec


def read_script(operands: list[str]) -> str:
    if operands and operands[0] != "-":
        return Path(operands[0]).read_text()
    return sys.stdin.read()


def directive_lines(script: str, prefixes: tuple[str, ...]) -> list[list[str]]:
    """Arguments of each directive in the leading comment block, as qsub reads them: it stops at
    the first line that is neither blank nor a comment."""
    found = []
    for line in script.splitlines():
        stripped = line.strip()
        prefix = next((p for p in prefixes if stripped.startswith(p)), None)
        if prefix:
            found.append(shlex.split(stripped[len(prefix) :], comments=True))
        elif stripped and not stripped.startswith("#"):
            break
    return found


def parse_resources(text: str, into: dict[str, str]) -> None:
    """`-l walltime=1:00:00,select=1:ncpus=2` adds to `into`; a later value wins."""
    for item in text.split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        into[key.strip()] = value.strip()


def parse_variables(text: str, into: dict[str, str]) -> None:
    """`-v A=1,B` (B takes the value from qsub's environment)."""
    for item in text.split(","):
        if not item:
            continue
        key, has_value, value = item.partition("=")
        into[key] = value if has_value else os.environ.get(key, "")


def parse(argv: list[str], *, options: str, directive_prefixes: tuple[str, ...]) -> Submission:
    """Parse a qsub-style command line (getopt `options`, as the real tool's getopt string) and
    the script's directives (any of `directive_prefixes`; `-C` names another) under it."""
    try:
        command_line, operands = getopt.getopt(argv, options)
    except getopt.GetoptError as error:
        raise UsageError(f"invalid option -- '{error.opt}'") from None
    if len(operands) > 1:
        raise UsageError("too many arguments")
    script = read_script(operands)
    prefixes = tuple(value for flag, value in command_line if flag == "-C") or directive_prefixes
    from_script: list[tuple[str, str]] = []
    for arguments in directive_lines(script, prefixes):
        try:
            parsed, _ = getopt.getopt(arguments, options)
        except getopt.GetoptError as error:
            raise UsageError(f"directive error: invalid option -- '{error.opt}'") from None
        from_script.extend(parsed)
    named = operands and operands[0] != "-"
    submission = Submission(script=script, name=Path(operands[0]).name if named else "STDIN")
    for flag, value in from_script + command_line:  # command line last: it wins
        apply(submission, flag, value)
    submission.arguments = [
        part for flag, value in command_line for part in (flag, value) if part
    ] + operands
    return submission


def apply(submission: Submission, flag: str, value: str) -> None:
    match flag:
        case "-N":
            submission.name = value
        case "-q":
            submission.queue = value
        case "-A":
            submission.account = value
        case "-P":
            submission.project = value
        case "-o":
            submission.output_path = value.split(":", 1)[-1]  # host:path
        case "-e":
            submission.error_path = value.split(":", 1)[-1]
        case "-j":
            submission.join = value
        case "-l":
            parse_resources(value, submission.resources)
        case "-v":
            parse_variables(value, submission.variables)
        case "-W":
            key, _, setting = value.partition("=")
            submission.additional[key] = setting
        case "-V":
            submission.export_all = True
        case "-z":
            submission.quiet = True
        case "-h":
            submission.hold = True


def origin_variables(queue: str, server: str, workdir: str) -> dict[str, str]:
    """The PBS_O_* variables every qsub records from where it ran."""
    carried = {
        f"PBS_O_{name}": os.environ[name] for name in CARRIED_VARIABLES if name in os.environ
    }
    return {
        **carried,
        "PBS_O_WORKDIR": workdir,
        "PBS_O_HOST": socket.gethostname(),
        "PBS_O_SERVER": server,
        "PBS_O_QUEUE": queue,
    }


def duration(seconds: float) -> str:
    """HH:MM:SS, hours unbounded, as PBS prints walltimes."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def wrapped(name: str, value: str, width: int = 78) -> str:
    """An attribute line as `qstat -f` prints it: long values break after a comma onto a line
    starting with a tab."""
    line, column = f"    {name} = ", len(name) + 7
    for index, piece in enumerate(value.split(",")):
        if index:
            line += ","
            column += 1
            if column + len(piece) >= width:
                line += "\n\t"
                column = 8
        line += piece
        column += len(piece)
    return line
