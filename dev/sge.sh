#!/usr/bin/env bash
# Installs and runs a real single-host Grid Engine 8.1.9 (Debian's gridengine-* packages) on this
# machine, without systemd: sge_qmaster and sge_execd on the same host.  Every subcommand is
# idempotent; Slurm (dev/slurm.sh) keeps running beside it.
#
#   dev/sge.sh install        packages (debconf preseeded), host aliases, act_qmaster, demo users
#   dev/sge.sh start          start what is not running, then apply the scheduling configuration
#                             (global and scheduler config, exec host, @allhosts, PE smp, projects
#                             research/physics, queue all.q with 16 slots) and wait for the host
#   dev/sge.sh stop           delete every job, then stop sge_execd and sge_qmaster
#   dev/sge.sh stop-master    stop only sge_qmaster (tests make the scheduler unreachable)
#   dev/sge.sh start-master   start only sge_qmaster again
#   dev/sge.sh status         show which daemons run (exit 1 if any is down)
#
# Pid files: $STATE/run/sge_qmaster.pid and sge_execd.pid; logs: $STATE/logs/sge_*.out (console)
# and sge_*.messages (links to the daemons' own message files), where STATE is
# $BATCHNOTEBOOK_STATE or <repo>/.dev.  Daemons started under another STATE are adopted through
# the pid files the daemons write into their spool directories.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=sge.sh

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${BATCHNOTEBOOK_STATE:-$REPO/.dev}
RUN=$STATE/run
LOGS=$STATE/logs

HOST=$(hostname -s)
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
QMASTER_SPOOL=/var/spool/gridengine/qmaster
EXECD_SPOOL=/var/spool/gridengine/execd
SPOOLDB=/var/spool/gridengine/spooldb
ADMIN_USER=sgeadmin
EXECD_PORT=$(getent services sge_execd | awk '{ print $2 }' | cut -d/ -f1)
EXECD_PORT=${EXECD_PORT:-6445}
PACKAGES=(gridengine-master gridengine-exec gridengine-client sudo)
# Debian's Torque-flavoured qsub/qstat would clash with Grid Engine's (/usr/bin/q*).
CLASHING_PACKAGES=(slurm-wlm-torque torque-client)
DEMO_USERS=(alice bob)
PROJECTS=(research physics)
SLOTS=16   # more than the 2 real cores, so that ~16 one-slot notebooks run at once

# ---------------------------------------------------------------------------------------------
# install

install_packages() {
    local p
    for p in "${CLASHING_PACKAGES[@]}"; do
        installed "$p" && die "$p is installed; its qsub/qstat clash with Grid Engine's (remove it first)"
    done
    [[ -n $(missing_packages "${PACKAGES[@]}") ]] || return 0
    # The packages then initialise the cluster themselves (spool, global configuration, managers)
    # for this host and cell.
    debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $HOST
EOF
    apt_install "${PACKAGES[@]}"
}

# The package initialises the spool only on its first configuration with gridengineconfig=true;
# repair a machine where that did not happen.
install_cluster() {
    [[ -e $SPOOLDB/sge ]] && return 0
    log "initialising the cluster spool in $SPOOLDB"
    install -d -m 0755 -o "$ADMIN_USER" -g "$ADMIN_USER" "$SPOOLDB" "$QMASTER_SPOOL" \
        "$QMASTER_SPOOL/job_scripts" "$EXECD_SPOOL" "$COMMON"
    [[ -f $COMMON/bootstrap ]] \
        || install -m 0644 -o "$ADMIN_USER" -g "$ADMIN_USER" /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
    runuser -u "$ADMIN_USER" -- /usr/share/gridengine/scripts/init_cluster \
        "$SGE_ROOT" "$SGE_CELL" "$SPOOLDB" "$ADMIN_USER" >/dev/null
}

install_host_files() {
    getent hosts "$HOST" >/dev/null || { echo "127.0.0.1 $HOST" >>/etc/hosts; log "added $HOST to /etc/hosts"; }
    # The host name resolves to 127.0.0.1, which resolves back to "localhost": without this alias
    # every client is refused with "commlib error: access denied (client IP resolved to host
    # name "localhost". This is not identical to clients host name ...)".
    put_file 0644 "$ADMIN_USER:$ADMIN_USER" "$COMMON/host_aliases" <<EOF
$HOST localhost
EOF
    put_file 0644 "$ADMIN_USER:$ADMIN_USER" "$COMMON/act_qmaster" <<EOF
$HOST
EOF
}

install_users() {
    local u
    for u in "${DEMO_USERS[@]}"; do
        # uid >= 1000 (useradd's UID_MIN): Grid Engine refuses jobs of users below min_uid 1000.
        id -u "$u" >/dev/null 2>&1 || { useradd -m -s /bin/bash "$u"; log "created user $u"; }
    done
}

cmd_install() {
    [[ $(id -u) == 0 ]] || die "install must run as root"
    install_packages
    install_cluster
    install_host_files
    install_users
    log "install done"
}

# ---------------------------------------------------------------------------------------------
# process bookkeeping (the daemon_* hooks of dev/lib.sh)

daemon_comm() { echo "$1"; }

# Where each daemon records its own pid (it forks into the background and writes it there).
# sge_execd names its spool directory after the host name it resolves itself to before it reads
# host_aliases: "localhost" here.
daemon_pidfiles() {
    case $1 in
        sge_qmaster) echo "$QMASTER_SPOOL/qmaster.pid" ;;
        sge_execd) compgen -G "$EXECD_SPOOL/*/execd.pid" || true ;;
    esac
}

daemon_port() { :; }

# The daemons fork into the background and write their pid file; their own log is the file
# "messages" beside it, linked as $LOGS/NAME.messages.
launch() { # NAME CMD...
    local name=$1 pidfile
    shift
    daemon_launch "$name" 30 "$@"
    pidfile=$(daemon_pidfiles "$name" | head -1)
    ln -sfn "$(dirname "$pidfile")/messages" "$LOGS/$name.messages"
}

# ---------------------------------------------------------------------------------------------
# configuration, applied through qconf once sge_qmaster runs

# qconf reports success on stderr: keep quiet unless it fails.
quiet_qconf() {
    local out
    out=$(qconf "$@" 2>&1) || { echo "$out" >&2; die "qconf $* failed"; }
}

# One "key value" line per attribute: continuation lines joined, blanks squeezed, comments gone.
normalise() {
    sed -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*/ /; ta' \
        | grep -v -e '^#' -e '^[[:space:]]*$' \
        | awk '{ key = $1; $1 = ""; sub(/^ +/, ""); print key " " $0 }'
}

# True when every attribute of DESIRED has that value in CURRENT (read-only attributes that
# qconf adds, like an exec host's load values, are not compared).
matches() { # CURRENT DESIRED
    awk 'NR == FNR { have[$1] = $0; next } have[$1] != $0 { exit 1 }' \
        <(normalise <"$1") <(normalise <"$2")
}

# Makes one configuration object look like stdin: added if missing, modified if different.
# KIND is qconf's letter(s): q (cluster queue), p (parallel environment), hgrp, e (exec host),
# prj (project).
apply_object() { # KIND NAME
    local kind=$1 name=$2 desired current
    desired=$(mktemp) current=$(mktemp)
    cat >"$desired"
    if qconf "-s$kind" "$name" >"$current" 2>/dev/null; then
        if ! matches "$current" "$desired"; then
            quiet_qconf "-M$kind" "$desired"
            log "updated $name"
        fi
    else
        quiet_qconf "-A$kind" "$desired"
        log "added $name"
    fi
    rm -f "$desired" "$current"
}

# Sets some attributes of a configuration that always exists (the global configuration: conf,
# the scheduler's: sconf), keeping the package's values for the rest.
set_attributes() { # KIND KEY=VALUE...
    local kind=$1; shift
    local current directory desired pair
    current=$(mktemp) directory=$(mktemp -d)
    # qconf -Mconf takes the configuration's name from the file's: global.
    desired=$directory/global
    qconf "-s$kind" | normalise >"$current"
    cp "$current" "$desired"
    for pair in "$@"; do
        awk -v key="${pair%%=*}" -v value="${pair#*=}" \
            '$1 == key { print key " " value; next } { print }' "$desired" >"$desired.new"
        mv "$desired.new" "$desired"
    done
    if ! cmp -s "$current" "$desired"; then
        quiet_qconf "-M$kind" "$desired"
        log "updated the $([[ $kind == sconf ]] && echo scheduler || echo global) configuration"
    fi
    rm -rf "$current" "$directory"
}

configure() {
    # No mail (exim is installed as a dependency but never started); on qdel kill every process
    # of the job by its extra group id, not only the job's own; write accounting records at
    # once, so that qacct knows a job the moment it leaves the queue (default: ~15 s later).
    set_attributes conf \
        "mailer=/bin/true" \
        "execd_params=ENABLE_ADDGRP_KILL=true" \
        "reporting_params=accounting=true reporting=false flush_time=00:00:15 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00"
    # Schedule every second and right after each submit/finish (default: every 15 s), and let
    # neither the load of this shared 2-core machine nor job load adjustments stop scheduling.
    set_attributes sconf \
        "schedule_interval=0:0:1" \
        "flush_submit_sec=1" \
        "flush_finish_sec=1" \
        "job_load_adjustments=NONE" \
        "load_adjustment_decay_time=0:0:0" \
        "schedd_job_info=true"
    apply_object e "$HOST" <<EOF
hostname $HOST
load_scaling NONE
complex_values NONE
user_lists NONE
xuser_lists NONE
projects NONE
xprojects NONE
usage_scaling NONE
report_variables NONE
EOF
    qconf -ss 2>/dev/null | grep -qx "$HOST" || quiet_qconf -as "$HOST"
    apply_object hgrp @allhosts <<EOF
group_name @allhosts
hostlist $HOST
EOF
    # One process per job with N slots on one host: what -pe smp N asks for.
    apply_object p smp <<EOF
pe_name smp
slots 999
user_lists NONE
xuser_lists NONE
start_proc_args NONE
stop_proc_args NONE
allocation_rule \$pe_slots
control_slaves FALSE
job_is_first_task TRUE
urgency_slots min
accounting_summary FALSE
qsort_args NONE
EOF
    local project
    for project in "${PROJECTS[@]}"; do
        apply_object prj "$project" <<EOF
name $project
oticket 0
fshare 0
acl NONE
xacl NONE
EOF
    done
    # unix_behavior: a job script runs with the shell its #! line names.
    apply_object q all.q <<EOF
qname all.q
hostlist @allhosts
seq_no 0
load_thresholds NONE
suspend_thresholds NONE
nsuspend 1
suspend_interval 00:05:00
priority 0
min_cpu_interval 00:05:00
processors UNDEFINED
qtype BATCH INTERACTIVE
ckpt_list NONE
pe_list smp
rerun FALSE
slots $SLOTS
tmpdir /tmp
shell /bin/bash
prolog NONE
epilog NONE
shell_start_mode unix_behavior
starter_method NONE
suspend_method NONE
resume_method NONE
terminate_method NONE
notify 00:00:60
owner_list NONE
user_lists NONE
xuser_lists NONE
subordinate_list NONE
complex_values NONE
projects NONE
xprojects NONE
calendar NONE
initial_state default
s_rt INFINITY
h_rt INFINITY
s_cpu INFINITY
h_cpu INFINITY
s_fsize INFINITY
h_fsize INFINITY
s_data INFINITY
h_data INFINITY
s_stack INFINITY
h_stack INFINITY
s_core INFINITY
h_core INFINITY
s_rss INFINITY
h_rss INFINITY
s_vmem INFINITY
h_vmem INFINITY
EOF
}

# ---------------------------------------------------------------------------------------------
# start / stop

qmaster_answers() { qstat -u '*' >/dev/null 2>&1; }

# The host is ready once sge_execd answers on its port and the queue instance on it is in no
# state that stops scheduling (u unknown, E error, d disabled, a alarm, s/S/C suspended, ...).
host_ready() {
    qping -info "$HOST" "$EXECD_PORT" execd 1 >/dev/null 2>&1 || return 1
    local line
    line=$(qstat -f -q "all.q@$HOST" 2>/dev/null | awk -v q="all.q@$HOST" '$1 == q')
    [[ -n $line && ! $(awk '{ print $6 }' <<<"$line") =~ [uEdaAcsSCD] ]]
}

check_installed() {
    [[ -x /usr/lib/gridengine/sge_qmaster && -e $SPOOLDB/sge && -f $COMMON/host_aliases ]] \
        || die "Grid Engine is not installed: run dev/sge.sh install"
}

start_qmaster() {
    daemon_pid sge_qmaster >/dev/null && return 0
    launch sge_qmaster /usr/sbin/sge_qmaster
    daemon_wait sge_qmaster 60 qmaster_answers
}

start_execd() {
    daemon_pid sge_execd >/dev/null && return 0
    launch sge_execd /usr/sbin/sge_execd
}

cmd_start() {
    check_installed
    start_qmaster
    configure
    start_execd
    daemon_wait sge_execd 60 host_ready
    log "running: sge_qmaster $(daemon_pid sge_qmaster), sge_execd $(daemon_pid sge_execd), all.q@$HOST with $SLOTS slots"
}

cmd_start_master() {
    check_installed
    start_qmaster
    log "sge_qmaster running ($(daemon_pid sge_qmaster))"
}

# sge_qmaster takes 7-9 s to exit on SIGTERM: both daemons get 30 s before SIGKILL.
cmd_stop_master() { daemon_stop sge_qmaster 30; }

# sge_execd leaves running jobs behind when it stops: delete every job first (only sge_qmaster
# can, so it is started for that if sge_execd still runs without it).
delete_all_jobs() {
    if ! daemon_pid sge_qmaster >/dev/null; then
        daemon_pid sge_execd >/dev/null || return 0
        log "starting sge_qmaster to delete the remaining jobs"
        start_qmaster
    fi
    local ids deadline
    ids=$(qstat -u '*' 2>/dev/null | awk 'NR > 2 { print $1 }' | sort -u)
    [[ -n $ids ]] || return 0
    log "deleting jobs: ${ids//$'\n'/ }"
    # shellcheck disable=SC2086
    qdel $ids >/dev/null 2>&1 || true
    deadline=$((SECONDS + 30))
    while [[ -n $(qstat -u '*' 2>/dev/null) ]] && ((SECONDS < deadline)); do
        sleep 0.5
    done
    ids=$(qstat -u '*' 2>/dev/null | awk 'NR > 2 { print $1 }' | sort -u)
    if [[ -n $ids ]]; then
        log "forcing the deletion of: ${ids//$'\n'/ }"
        # shellcheck disable=SC2086
        qdel -f $ids >/dev/null 2>&1 || true
    fi
}

cmd_stop() {
    delete_all_jobs
    daemon_stop sge_execd 30
    daemon_stop sge_qmaster 30
    log "stopped"
}

cmd_status() {
    local rc=0
    daemons_status 12 sge_qmaster sge_execd || rc=1
    if qmaster_answers; then
        qstat -f -q "all.q@$HOST" 2>/dev/null | awk -v q="all.q@$HOST" '$1 == q { printf "%-12s %s slots (resv/used/tot) %s\n", "queue", $1, $3 }'
    fi
    return $rc
}

# Several stacks (dev, tests, other sessions) may call this script at once: serialise all but
# status.
case ${1:-} in
    install | start | stop | start-master | stop-master) take_lock /run/lock/batchnotebook-sge.lock 600 ;;
esac
case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    start-master) cmd_start_master ;;
    stop-master) cmd_stop_master ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 install|start|stop|start-master|stop-master|status" >&2
        exit 2
        ;;
esac
