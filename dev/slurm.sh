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
#   dev/slurm.sh kill NAME   SIGKILL one daemon (slurmctld, slurmdbd, slurmd or slurmrestd), as a
#                            crash would; `start` brings it back (the chaos campaign's faults)
#   dev/slurm.sh status      show which daemons run (exit 1 if any is down)
#
# Pid files: $STATE/run/<daemon>.pid, logs: $STATE/logs/<daemon>.log (+ .out), where STATE is
# $BATCHNOTEBOOK_STATE or <repo>/.dev.  Slurm itself is one system-wide installation: daemons
# already running under another STATE are found through their own system pid files and adopted.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=slurm.sh

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

# ---------------------------------------------------------------------------------------------
# install

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
# The benchmark's (bench/): up to 256 light jobs share each of at most 4 CPUs, so a run with
# hundreds of notebooks leaves the other 12 CPUs to debug and batch.
PartitionName=bench Nodes=$NODE Default=NO MaxTime=INFINITE State=UP OverSubscribe=FORCE:256 MaxCPUsPerNode=4
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
    apt_install "${PACKAGES[@]}"
    install_users
    install_hosts
    install_keys
    install_config
    install_mariadb_datadir
    install_jobenv
    if [[ $FILE_CHANGED == 1 ]] && daemon_pid slurmctld >/dev/null; then
        log "configuration changed while Slurm runs: apply with dev/slurm.sh stop && dev/slurm.sh start"
    fi
    log "install done"
}

# ---------------------------------------------------------------------------------------------
# process bookkeeping (the daemon_* hooks of dev/lib.sh)

# The process name (/proc/PID/comm) each pid file must point at; a pid reused by another
# program is not ours.
daemon_comm() {
    case $1 in
        munged) echo munged ;;
        mariadb) echo mariadbd ;;
        *) echo "$1" ;;
    esac
}

# Where the daemon itself records its pid, so one started under another STATE is found.
daemon_pidfiles() {
    case $1 in
        munged) echo /run/munge/munged.pid ;;
        mariadb) echo /run/mysqld/mysqld.pid ;;
        slurmdbd) echo /run/slurmdbd.pid ;;
        slurmctld) echo /run/slurmctld.pid ;;
        slurmd) echo /run/slurmd.pid ;;
    esac
}

# slurmrestd writes no pid file: one started under another STATE is found by its port.
daemon_port() {
    if [[ $1 == slurmrestd ]]; then echo "${REST_ADDR##*:}"; fi
}

# ---------------------------------------------------------------------------------------------
# start

start_munged() {
    daemon_pid munged >/dev/null && return 0
    install -d -m 0755 -o munge -g munge /run/munge
    # As the munge user (munged refuses root); setpriv execs, so the recorded pid is munged's.
    daemon_spawn munged setpriv --reuid=munge --regid=munge --init-groups -- /usr/sbin/munged -F
    daemon_wait munged 15 bash -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
    daemon_pid mariadb >/dev/null && return 0
    install -d -m 0755 -o mysql -g mysql /run/mysqld
    # Socket only: slurmdbd connects to localhost through /run/mysqld/mysqld.sock.
    daemon_spawn mariadb /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
        --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock --skip-networking \
        --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900
    daemon_wait mariadb 60 mariadb-admin --socket=/run/mysqld/mysqld.sock ping
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
    daemon_pid slurmdbd >/dev/null && return 0
    daemon_spawn slurmdbd /usr/sbin/slurmdbd -D
    daemon_wait slurmdbd 60 port_listening 6819
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
    daemon_pid slurmctld >/dev/null && return 0
    # It daemonizes: in the foreground (-D) it would copy every log line to stderr.  -L: its own
    # log, with timestamps.
    daemon_launch slurmctld 15 /usr/sbin/slurmctld -L "$LOGS/slurmctld.log"
    daemon_wait slurmctld 60 ctld_up
}

start_slurmd() {
    daemon_pid slurmd >/dev/null && return 0
    daemon_launch slurmd 15 /usr/sbin/slurmd -L "$LOGS/slurmd.log"
    daemon_wait slurmd 30 port_listening 6818
}

start_slurmrestd() {
    daemon_pid slurmrestd >/dev/null && return 0
    # SLURM_JWT=daemon: every request carries the caller's own JWT (X-SLURM-USER-TOKEN).
    daemon_spawn slurmrestd env SLURM_JWT=daemon setpriv --reuid="$REST_USER" --regid="$REST_USER" \
        --init-groups -- /usr/sbin/slurmrestd -a rest_auth/jwt "$REST_ADDR"
    daemon_wait slurmrestd 30 curl -s -o /dev/null "http://$REST_ADDR/"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null; }

wait_node_idle() {
    local deadline=$((SECONDS + 60)) st
    while :; do
        st=$(node_state || true)
        case $st in
            # comp: finishing a job that was killed while slurmd was down; slurmd answers, and
            # slurmctld clears the state itself once it hears the job is gone.
            idle | mix | alloc | comp) return 0 ;;
            drain* | drng | down* | fail*)
                # Left over from an earlier unclean stop: bring the node back.
                scontrol update "nodename=$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        if ((SECONDS >= deadline)); then
            log "node $NODE not idle after 60 s (state: '${st:-?}')"
            die_with_logs "slurm start failed" "$LOGS"/slurmctld.{out,log} "$LOGS"/slurmd.{out,log}
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
    daemon_pid slurmd >/dev/null && wait_node_idle
    log "slurmctld running ($(daemon_pid slurmctld)), node $NODE $(node_state)"
}

cmd_stop_ctld() { daemon_stop slurmctld 15; }

cmd_kill() {
    local name=${1:-} pid
    case $name in
        slurmctld | slurmdbd | slurmd | slurmrestd) ;;
        *) die "kill: which daemon? slurmctld, slurmdbd, slurmd or slurmrestd, not '$name'" ;;
    esac
    pid=$(daemon_pid "$name") || die "$name is not running"
    kill -KILL "$pid"
    log "killed $name ($pid)"
}

# Cancel every job first: slurmstepd otherwise keeps retrying and slurmd hangs on stop.
cancel_all_jobs() {
    if ! daemon_pid slurmctld >/dev/null; then
        # Only slurmctld can cancel; with slurmd up, jobs may still run (e.g. after stop-ctld).
        daemon_pid slurmd >/dev/null && daemon_pid munged >/dev/null || return 0
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
        daemon_stop "$d" 15
    done
    log "stopped"
}

cmd_status() {
    local rc=0
    daemons_status 11 munged mariadb slurmdbd slurmctld slurmd slurmrestd || rc=1
    if ctld_up; then
        printf '%-11s %s\n' "node" "$NODE $(node_state)"
    fi
    return $rc
}

# Slurm is system-wide and several stacks (dev, tests, other sessions) call this script at the
# same time: serialise everything but status.  Daemons are started with fd 9 closed, so they do
# not hold the lock.
case ${1:-} in
    install | start | stop | start-ctld | stop-ctld) take_lock /run/lock/batchnotebook-slurm.lock 600 ;;
esac
case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    start-ctld) cmd_start_ctld ;;
    stop-ctld) cmd_stop_ctld ;;
    kill) cmd_kill "${2:-}" ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 install|start|stop|start-ctld|stop-ctld|kill NAME|status" >&2
        exit 2
        ;;
esac
