#!/usr/bin/env bash
# Installs and runs a real single-node Slurm 22.05 (Debian packages) on this machine, without
# systemd: munge, MariaDB, slurmdbd, slurmctld, slurmd and slurmrestd, plus demo users and the
# job-side Python environment.  Every subcommand is idempotent.
#
#   dev/slurm.sh install     packages, users, config files, keys, /opt/batchnotebook/jobenv
#   dev/slurm.sh start       start what is not running (munged, mariadbd, slurmdbd, slurmctld,
#                            slurmd, slurmrestd on 127.0.0.1:6820), create the accounting
#                            database, cluster "local", accounts research/physics with alice and
#                            bob in research; wait until node is idle
#   dev/slurm.sh stop        cancel all jobs, then stop the daemons in the reverse order
#   dev/slurm.sh start-ctld  start only slurmctld (tests kill and restart it); waits for the node
#   dev/slurm.sh stop-ctld   stop only slurmctld
#   dev/slurm.sh status      show which daemons run (exit 1 if any is down)
#
# Pid files: $STATE/run/<daemon>.pid, logs: $STATE/logs/<daemon>.log (+ .out), where STATE is
# $BATCHNOTEBOOK_STATE or <repo>/.dev.  Slurm itself is one system-wide installation: daemons
# already running under another STATE are found through their own system pid files and adopted.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${BATCHNOTEBOOK_STATE:-$REPO/.dev}
RUN=$STATE/run
LOGS=$STATE/logs

NODE=$(hostname -s)             # the node must be named as slurmd sees itself (hostname -s)
CLUSTER=local
JWT_KEY=/var/spool/slurm/jwt_hs256.key
JOBENV=/opt/batchnotebook/jobenv
JUPYTERHUB_VERSION=6.1.1
REST_USER=slurmrest             # slurmrestd refuses to run as root or as SlurmUser
REST_ADDR=127.0.0.1:6820
DB_NAME=slurm_acct_db
PACKAGES=(munge slurm-client slurmctld slurmd slurm-wlm-basic-plugins slurmdbd mariadb-server
          slurmrestd slurm-wlm-jwt-plugin sudo)
DEMO_USERS=(alice bob)

log() { echo "slurm.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# install

CONFIG_CHANGED=0

# Writes stdin to PATH only when the content differs, so a re-run touches nothing.
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
        CONFIG_CHANGED=1
    fi
    chmod "$mode" "$path"
    chown "$owner" "$path"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    # Package scripts must not start daemons themselves (no systemd here; we start them).
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    # Other sessions may be using apt at the same time: wait for the lock instead of failing.
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -q -y)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >/dev/null
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" \
        >"/tmp/slurm-apt-install.$$.log" 2>&1 \
        || { tail -30 "/tmp/slurm-apt-install.$$.log" >&2; [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    rm -f "/tmp/slurm-apt-install.$$.log"
}

install_users() {
    local u
    for u in "${DEMO_USERS[@]}"; do
        # uid >= 1000 comes from useradd's defaults (UID_MIN) for non-system users.
        id -u "$u" >/dev/null 2>&1 || { useradd -m -s /bin/bash "$u"; log "created user $u"; }
    done
    id -u "$REST_USER" >/dev/null 2>&1 \
        || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$REST_USER"
}

install_hosts() {
    getent hosts "$NODE" >/dev/null || { echo "127.0.0.1 $NODE" >>/etc/hosts; log "added $NODE to /etc/hosts"; }
}

install_keys() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -m 0700 -o munge -g munge /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        log "created munge key"
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -m 0755 -o slurm -g slurm "$(dirname "$JWT_KEY")"
    if [[ ! -s $JWT_KEY ]]; then
        dd if=/dev/urandom of="$JWT_KEY" bs=32 count=1 status=none
        log "created JWT key $JWT_KEY"
    fi
    chown slurm:slurm "$JWT_KEY"
    chmod 0600 "$JWT_KEY"
}

install_config() {
    install -d -m 0755 -o slurm -g slurm /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
    install -d -m 0755 /var/lib/slurm/slurmd
    put_file 0644 root:root /etc/slurm/slurm.conf <<EOF
# Written by BatchNotebook dev/slurm.sh; edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
# JWT lets slurmrestd (and scontrol token) authenticate users.
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
MpiDefault=none
SwitchType=switch/none
# cgroup plugins left scancel unable to kill jobs and slurmd hung on this kind of machine.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SchedulerType=sched/backfill
# Schedule a submitted job at once instead of batching submissions.
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
# Without a MailProg slurmctld logs an error on every start.
MailProg=/bin/true
# Finished jobs stay visible to squeue -t all for 5 minutes.
MinJobAge=300
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=5
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE
# Reject jobs whose user/account has no association ("Invalid account ...").
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
SlurmctldDebug=info
SlurmdDebug=info
# Advertise more CPUs than the 2 real cores so ~16 one-CPU jobs can run at once.
SlurmdParameters=config_overrides
NodeName=$NODE CPUs=16 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
    # Keep the database password across re-runs; it lives only in this 0600 file.
    local pass=""
    [[ -f /etc/slurm/slurmdbd.conf ]] \
        && pass=$(sed -n 's/^StoragePass=//p' /etc/slurm/slurmdbd.conf)
    [[ -n $pass ]] || pass=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    put_file 0600 slurm:slurm /etc/slurm/slurmdbd.conf <<EOF
# Written by BatchNotebook dev/slurm.sh; edits are overwritten.
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
DbdHost=$NODE
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$pass
StorageLoc=$DB_NAME
DebugLevel=info
EOF
}

install_mariadb_datadir() {
    # The package normally initialises the data directory; repair it if that did not happen.
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        log "initialising MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
            >/tmp/mariadb-install-db.log 2>&1 || { cat /tmp/mariadb-install-db.log >&2; die "mariadb-install-db failed"; }
    fi
}

jobenv_ok() {
    [[ -x $JOBENV/bin/jupyterhub-singleuser && -x $JOBENV/bin/jupyter-lab ]] || return 1
    "$JOBENV/bin/python" - "$JUPYTERHUB_VERSION" <<'EOF' 2>/dev/null
import sys, importlib.metadata as m
sys.exit(0 if m.version("jupyterhub") == sys.argv[1] and m.version("jupyterlab") else 1)
EOF
}

install_jobenv() {
    jobenv_ok && return 0
    log "building $JOBENV (jupyterhub==$JUPYTERHUB_VERSION, jupyterlab)"
    # Debian's python, not root's pyenv: /root is 0700, so a venv made from it is unusable by
    # the job's user.  umask 022 keeps everything world-readable.
    umask 022
    [[ -x $JOBENV/bin/python ]] || { rm -rf "$JOBENV"; /usr/bin/python3 -m venv "$JOBENV"; }
    "$JOBENV/bin/python" -m pip install -q --disable-pip-version-check \
        "jupyterhub==$JUPYTERHUB_VERSION" jupyterlab
    chmod -R a+rX /opt/batchnotebook
    jobenv_ok || die "$JOBENV is incomplete after pip install"
}

cmd_install() {
    [[ $(id -u) == 0 ]] || die "install must run as root"
    install_packages
    install_users
    install_hosts
    install_keys
    install_config
    install_mariadb_datadir
    install_jobenv
    if [[ $CONFIG_CHANGED == 1 ]] && running_pid slurmctld >/dev/null; then
        log "configuration changed while Slurm runs: apply with dev/slurm.sh stop && dev/slurm.sh start"
    fi
    log "install done"
}

# ---------------------------------------------------------------------------------------------
# process bookkeeping

# The process name (/proc/PID/comm) each pid file must point at; a pid reused by another
# program is not ours.
comm_of() {
    case $1 in
        munged) echo munged ;;
        mariadb) echo mariadbd ;;
        *) echo "$1" ;;
    esac
}

# Where the daemon itself records its pid, so one started under another STATE is found.
system_pidfile() {
    case $1 in
        munged) echo /run/munge/munged.pid ;;
        mariadb) echo /run/mysqld/mysqld.pid ;;
        slurmdbd) echo /run/slurmdbd.pid ;;
        slurmctld) echo /run/slurmctld.pid ;;
        slurmd) echo /run/slurmd.pid ;;
        *) echo "" ;;
    esac
}

pid_alive() { # NAME PID
    [[ -n $2 && -r /proc/$2/comm ]] && [[ $(cat "/proc/$2/comm" 2>/dev/null) == "$(comm_of "$1")" ]] || return 1
    # A daemon that exited stays a zombie until PID 1 reaps it, which here can take seconds.
    local stat
    stat=$(cat "/proc/$2/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Prints the pid of NAME if it runs (from our pid file, else adopted from the system one);
# clears pid files that point at nothing.
running_pid() { # NAME
    local name=$1 f pid sys
    f=$RUN/$name.pid
    if [[ -f $f ]]; then
        pid=$(cat "$f" 2>/dev/null || true)
        if pid_alive "$name" "$pid"; then echo "$pid"; return 0; fi
        rm -f "$f"
    fi
    sys=$(system_pidfile "$name")
    if [[ -n $sys && -f $sys ]]; then
        pid=$(tr -dc 0-9 <"$sys" 2>/dev/null || true)
        if pid_alive "$name" "$pid"; then
            mkdir -p "$RUN"; echo "$pid" >"$f"; echo "$pid"; return 0
        fi
        rm -f "$sys"   # stale: breaks package scripts and confuses the next start
    fi
    if [[ $name == slurmrestd ]]; then
        pid=$(ss -Hltnp "sport = :${REST_ADDR##*:}" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
        if pid_alive "$name" "$pid"; then
            mkdir -p "$RUN"; echo "$pid" >"$f"; echo "$pid"; return 0
        fi
    fi
    return 1
}

# Runs a daemon in the foreground of its own session, detached from our terminal; $! is then
# the daemon's own pid (setsid/setpriv exec, they do not fork), which we record.  Its console
# goes to $LOGS/NAME.log.
spawn() { # NAME CMD...
    local name=$1; shift
    mkdir -p "$RUN" "$LOGS"
    echo "=== $(date '+%F %T') starting: $*" >>"$LOGS/$name.log"
    setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
    echo $! >"$RUN/$name.pid"
}

# slurmctld/slurmd: in the foreground (-D) they copy every log line to stderr, so instead they
# daemonize, log with timestamps to $LOGS/NAME.log (-L), and we adopt the pid from their own pid
# file.  Errors printed before the daemon forks (bad config) land in $LOGS/NAME.out.
launch() { # NAME CMD...
    local name=$1; shift
    mkdir -p "$RUN" "$LOGS"
    echo "=== $(date '+%F %T') starting: $*" >>"$LOGS/$name.out"
    setsid "$@" </dev/null >>"$LOGS/$name.out" 2>&1 9>&- || { log_tail "$name"; die "$name failed to start"; }
    local deadline=$((SECONDS + 15))
    until running_pid "$name" >/dev/null; do
        ((SECONDS < deadline)) || { log_tail "$name"; die "$name wrote no pid file (logs: $LOGS/$name.*)"; }
        sleep 0.1
    done
}

log_tail() { # NAME
    local f
    for f in "$LOGS/$1.out" "$LOGS/$1.log"; do
        [[ -s $f ]] && { echo "--- tail $f" >&2; tail -20 "$f" >&2; }
    done
    return 0
}

# Waits up to SECS for CHECK to succeed; fails with the daemon's log tail.
wait_for() { # NAME SECS CHECK...
    local name=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ! running_pid "$name" >/dev/null; then
            log_tail "$name"
            die "$name exited during start-up (logs: $LOGS/$name.*)"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$name"
            die "$name not ready after ${secs}s (logs: $LOGS/$name.*)"
        fi
        sleep 0.2
    done
}

stop_daemon() { # NAME
    local name=$1 pid i
    pid=$(running_pid "$name") || { rm -f "$RUN/$name.pid"; return 0; }
    log "stopping $name ($pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_alive "$name" "$pid" || break
        sleep 0.1
    done
    if pid_alive "$name" "$pid"; then
        log "$name ($pid) ignored SIGTERM for 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$RUN/$name.pid"
    local sys; sys=$(system_pidfile "$name")
    [[ -n $sys ]] && rm -f "$sys"
    return 0
}

# ---------------------------------------------------------------------------------------------
# start

port_listening() { ss -Hltn "sport = :$1" | grep -q .; }

start_munged() {
    running_pid munged >/dev/null && return 0
    install -d -m 0755 -o munge -g munge /run/munge
    rm -f /run/munge/munged.pid
    # As the munge user (munged refuses root); setpriv execs, so the recorded pid is munged's.
    spawn munged setpriv --reuid=munge --regid=munge --init-groups -- /usr/sbin/munged -F
    wait_for munged 15 bash -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
    running_pid mariadb >/dev/null && return 0
    install -d -m 0755 -o mysql -g mysql /run/mysqld
    rm -f /run/mysqld/mysqld.pid
    # Socket only: slurmdbd connects to localhost through /run/mysqld/mysqld.sock.
    spawn mariadb /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
        --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock --skip-networking \
        --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900
    wait_for mariadb 60 mariadb-admin --socket=/run/mysqld/mysqld.sock ping
}

ensure_db() {
    local pass
    pass=$(sed -n 's/^StoragePass=//p' /etc/slurm/slurmdbd.conf)
    [[ -n $pass ]] || die "no StoragePass in /etc/slurm/slurmdbd.conf (run dev/slurm.sh install)"
    mariadb --socket=/run/mysqld/mysqld.sock <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON $DB_NAME.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
    running_pid slurmdbd >/dev/null && return 0
    rm -f /run/slurmdbd.pid
    spawn slurmdbd /usr/sbin/slurmdbd -D
    wait_for slurmdbd 60 port_listening 6819
}

# Cluster, accounts and users in the accounting database (needs slurmdbd only).
ensure_accounts() {
    local assocs
    assocs=$(sacctmgr -n -P show assoc "cluster=$CLUSTER" format=account,user 2>/dev/null || true)
    if ! grep -qx "root|root" <<<"$assocs"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    local a
    for a in research physics; do
        grep -q "^$a|" <<<"$assocs" \
            || sacctmgr -i add account "$a" "cluster=$CLUSTER" "Description=$a" "Organization=demo" >/dev/null
    done
    local u
    for u in "${DEMO_USERS[@]}"; do
        grep -qx "research|$u" <<<"$assocs" \
            || sacctmgr -i add user "$u" account=research "cluster=$CLUSTER" DefaultAccount=research >/dev/null
    done
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurmctld() {
    running_pid slurmctld >/dev/null && return 0
    rm -f /run/slurmctld.pid
    launch slurmctld /usr/sbin/slurmctld -L "$LOGS/slurmctld.log"
    wait_for slurmctld 60 ctld_up
}

start_slurmd() {
    running_pid slurmd >/dev/null && return 0
    rm -f /run/slurmd.pid
    launch slurmd /usr/sbin/slurmd -L "$LOGS/slurmd.log"
    wait_for slurmd 30 port_listening 6818
}

start_slurmrestd() {
    running_pid slurmrestd >/dev/null && return 0
    # SLURM_JWT=daemon: every request carries the caller's own JWT (X-SLURM-USER-TOKEN).
    spawn slurmrestd env SLURM_JWT=daemon setpriv --reuid="$REST_USER" --regid="$REST_USER" \
        --init-groups -- /usr/sbin/slurmrestd -a rest_auth/jwt "$REST_ADDR"
    wait_for slurmrestd 30 curl -s -o /dev/null "http://$REST_ADDR/"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null; }

wait_node_idle() {
    local deadline=$((SECONDS + 60)) st
    while :; do
        st=$(node_state || true)
        case $st in
            idle | mix | alloc) return 0 ;;
            drain* | drng | down* | fail*)
                # Left over from an earlier unclean stop: bring the node back.
                scontrol update "nodename=$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        if ((SECONDS >= deadline)); then
            log "node $NODE not idle after 60 s (state: '${st:-?}')"
            log_tail slurmctld
            log_tail slurmd
            die "slurm start failed"
        fi
        sleep 0.2
    done
}

check_installed() {
    [[ -f /etc/slurm/slurm.conf && -f /etc/slurm/slurmdbd.conf && -x /usr/sbin/slurmctld ]] \
        || die "Slurm is not installed: run dev/slurm.sh install"
}

cmd_start() {
    check_installed
    start_munged
    start_mariadb
    ensure_db
    start_slurmdbd
    ensure_accounts
    start_slurmctld
    start_slurmd
    start_slurmrestd
    wait_node_idle
    log "running: node $NODE $(node_state), REST on http://$REST_ADDR"
}

cmd_start_ctld() {
    check_installed
    start_slurmctld
    # A restarted slurmctld shows the node as "unk" (nothing schedules) for ~4 s, until slurmd
    # registers again: wait for that so callers can submit right away.
    running_pid slurmd >/dev/null && wait_node_idle
    log "slurmctld running ($(running_pid slurmctld)), node $NODE $(node_state)"
}

cmd_stop_ctld() { stop_daemon slurmctld; }

# Cancel every job first: slurmstepd otherwise keeps retrying and slurmd hangs on stop.
cancel_all_jobs() {
    if ! running_pid slurmctld >/dev/null; then
        # Only slurmctld can cancel; with slurmd up, jobs may still run (e.g. after stop-ctld).
        running_pid slurmd >/dev/null && running_pid munged >/dev/null || return 0
        log "starting slurmctld to cancel the remaining jobs"
        start_slurmctld
    fi
    ctld_up || return 0
    local ids
    ids=$(squeue -h -o %A 2>/dev/null || true)
    [[ -n $ids ]] || return 0
    log "cancelling jobs: ${ids//$'\n'/ }"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while [[ -n $(squeue -h -t running,completing,pending -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do
        sleep 0.2
    done
}

cmd_stop() {
    cancel_all_jobs
    local d
    for d in slurmrestd slurmd slurmctld slurmdbd mariadb munged; do
        stop_daemon "$d"
    done
    log "stopped"
}

cmd_status() {
    local d pid rc=0
    for d in munged mariadb slurmdbd slurmctld slurmd slurmrestd; do
        if pid=$(running_pid "$d"); then
            printf '%-11s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-11s stopped\n' "$d"
            rc=1
        fi
    done
    if ctld_up; then
        printf '%-11s %s\n' "node" "$NODE $(node_state)"
    fi
    return $rc
}

# Slurm is system-wide and several stacks (dev, tests, other sessions) call this script at the
# same time: serialise everything but status.  Daemons are started with fd 9 closed, so they do
# not hold the lock.
lock() {
    exec 9>/run/lock/batchnotebook-slurm.lock
    flock -w 600 9 || die "could not get /run/lock/batchnotebook-slurm.lock within 600 s"
}

case ${1:-} in
    install | start | stop | start-ctld | stop-ctld) lock ;;
esac
case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    start-ctld) cmd_start_ctld ;;
    stop-ctld) cmd_stop_ctld ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 install|start|stop|start-ctld|stop-ctld|status" >&2
        exit 2
        ;;
esac
