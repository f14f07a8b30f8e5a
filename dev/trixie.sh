#!/usr/bin/env bash
# A second, current Slurm site: Slurm 24.11 from Debian 13 (trixie) in a root filesystem of its
# own (mmdebstrap), run as four "nodes" in network, UTS and mount namespaces on a private
# bridge.  It leaves the system's Slurm 22.05 (dev/slurm.sh) alone: other binaries, other
# configuration, other addresses.
#
#   dev/trixie.sh build          the root filesystem, cached outside the repo in ROOTFS (below);
#                                reused when present; built into a temporary directory and renamed,
#                                so an interrupted build is never used.  Timings in ROOTFS.timings
#   dev/trixie.sh start          bridge bnb-trixie 10.250.0.1/24, the nodes and their daemons:
#                                  tx-ctl   10.250.0.10  munged mariadbd slurmdbd slurmctld
#                                                        slurmrestd (JWT, 0.0.0.0:6820)
#                                  tx-login 10.250.0.11  munged sshd (port 22)
#                                  tx-c1    10.250.0.21  munged slurmd
#                                  tx-c2    10.250.0.22  munged slurmd
#                                waits until both compute nodes are idle and slurmrestd answers;
#                                adopts what already runs
#   dev/trixie.sh stop [--purge] cancel all jobs, stop the daemons (slurmrestd, slurmd,
#                                slurmctld, slurmdbd, mariadbd, sshd, munged), end the nodes'
#                                namespaces; --purge also removes the network namespaces, the
#                                bridge and our iptables rules
#   dev/trixie.sh status         which daemons run (exit 1 if any is down)
#   dev/trixie.sh exec NODE CMD...       run CMD in NODE (its namespaces, chrooted), e.g.
#                                dev/trixie.sh exec tx-login runuser -u alice -- sbatch ...
#   dev/trixie.sh authorize PUBKEY_FILE  let that key log in as batchnotebook on tx-login
#   dev/trixie.sh host-key       the login node's sshd host public key (ed25519)
#   dev/trixie.sh jwt-key-path   the host path of the JWT key (HS256) slurmctld checks tokens with
#
# Files: ROOTFS = /var/cache/batchnotebook/trixie-slurm-<hash of the package list and
# ROOTFS_VERSION>; pid files /run/batchnotebook-trixie/<node>/<daemon>.pid (<node>/ns.pid: the
# process that holds the node's namespaces); logs /var/log/batchnotebook-trixie/<node>/<daemon>.log;
# /home of every node: /var/lib/batchnotebook/trixie-home (one directory, as a cluster file
# system would be).  Users alice and bob have the host's uids; the service account
# batchnotebook (key logins only) may sudo to alice and bob; slurmrestd runs as slurmrest.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=trixie.sh

SUITE=trixie
MIRROR=http://deb.debian.org/debian
# Bump to force a rebuild of the root filesystem (part of its cache key, with the package list).
ROOTFS_VERSION=1
JUPYTERHUB_VERSION=6.1.1
PACKAGES=(munge slurm-client slurmctld slurmd slurm-wlm-basic-plugins slurmdbd
          slurm-wlm-mysql-plugin mariadb-server slurmrestd slurm-wlm-jwt-plugin openssh-server
          sudo python3 python3-venv iproute2 procps ca-certificates hostname passwd curl)
CACHE=/var/cache/batchnotebook
KEY=$(printf '%s\n' "$ROOTFS_VERSION" "$JUPYTERHUB_VERSION" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
ROOTFS=$CACHE/trixie-slurm-$KEY
RUN=/run/batchnotebook-trixie
LOGS=/var/log/batchnotebook-trixie
HOMES=/var/lib/batchnotebook/trixie-home
JOBENV=/opt/batchnotebook/jobenv
JWT_KEY=/var/spool/slurm/jwt_hs256.key      # inside the root filesystem
BRIDGE=bnb-trixie
BRIDGE_ADDR=10.250.0.1
SUBNET=10.250.0.0/24
NODES=(tx-ctl tx-login tx-c1 tx-c2)
declare -A ADDR=([tx-ctl]=10.250.0.10 [tx-login]=10.250.0.11 [tx-c1]=10.250.0.21 [tx-c2]=10.250.0.22)
COMPUTE=(tx-c1 tx-c2)
CLUSTER=trixie
DEMO_USERS=(alice bob)
ACCOUNT=batchnotebook                  # the operator's service account (ssh, REST query user)
ACCOUNT_HOME=/var/lib/batchnotebook    # inside the root filesystem
REST_USER=slurmrest
REST_PORT=6820
DB_NAME=slurm_acct_db
PATH_IN=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---------------------------------------------------------------------------------------------
# build

# Runs CMD chrooted into DIR with /dev and /proc mounted in a private mount namespace (nothing
# stays mounted afterwards), in this machine's network (for apt and pip).
in_build_root() { # DIR CMD...
    local dir=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private -- bash -c '
        set -e; dir=$1; shift
        mount --rbind /dev "$dir/dev"
        mount -t proc proc "$dir/proc"
        exec chroot "$dir" "$@"' build "$dir" env -i PATH="$PATH_IN" HOME=/root LANG=C.UTF-8 "$@"
}

build_jobenv() { # DIR
    local dir=$1 had_resolv=0
    log "building $JOBENV in the root filesystem (jupyterhub==$JUPYTERHUB_VERSION, jupyterlab)"
    [[ -e $dir/etc/resolv.conf || -L $dir/etc/resolv.conf ]] && { mv "$dir/etc/resolv.conf" "$dir/etc/resolv.conf.bnb"; had_resolv=1; }
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    # This machine's CA bundle: its egress to PyPI may go through a proxy with its own CA.
    cp -L /etc/ssl/certs/ca-certificates.crt "$dir/tmp/host-ca.crt"
    in_build_root "$dir" sh -c "umask 022 && python3 -m venv $JOBENV \
        && PIP_CERT=/tmp/host-ca.crt $JOBENV/bin/python -m pip install -q --disable-pip-version-check \
           'jupyterhub==$JUPYTERHUB_VERSION' jupyterlab \
        && chmod -R a+rX /opt/batchnotebook \
        && $JOBENV/bin/jupyterhub-singleuser --version >/dev/null && $JOBENV/bin/jupyter-lab --version >/dev/null"
    rm -f "$dir/etc/resolv.conf" "$dir/tmp/host-ca.crt"
    if [[ $had_resolv == 1 ]]; then mv "$dir/etc/resolv.conf.bnb" "$dir/etc/resolv.conf"; fi
}

cmd_build() {
    [[ $(id -u) == 0 ]] || die "build must run as root"
    if [[ -d $ROOTFS ]]; then
        log "root filesystem cached: $ROOTFS"
        return 0
    fi
    apt_install mmdebstrap
    mkdir -p "$CACHE"
    local tmp=$ROOTFS.tmp t0=$SECONDS t1 t2 included
    rm -rf "$tmp"   # a build that was interrupted
    included=$(IFS=,; echo "${PACKAGES[*]}")
    log "building the $SUITE root filesystem in $tmp (Slurm from $MIRROR)"
    # apt variant: Essential + apt + our packages (and their dependencies); no recommends.
    mmdebstrap --variant=apt --include="$included" --aptopt='APT::Install-Recommends "false"' \
        "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1 \
        || die_with_logs "mmdebstrap failed" "$tmp.log"
    t1=$SECONDS
    build_jobenv "$tmp"
    t2=$SECONDS
    printf 'mmdebstrap %d s\njobenv %d s\ntotal %d s\nbuilt %s\n' \
        $((t1 - t0)) $((t2 - t1)) $((t2 - t0)) "$(date '+%F %T')" >"$ROOTFS.timings"
    mv "$tmp" "$ROOTFS"
    mv -f "$tmp.log" "$ROOTFS.log"
    log "built $ROOTFS in $((t2 - t0)) s (mmdebstrap $((t1 - t0)) s, jobenv $((t2 - t1)) s)"
}

# ---------------------------------------------------------------------------------------------
# the root filesystem's configuration (idempotent; runs at every start)

need_rootfs() { [[ -d $ROOTFS ]] || die "no root filesystem $ROOTFS: run dev/trixie.sh build"; }

# CMD chrooted into the root filesystem, without mounts (user and file administration only).
in_root() { chroot "$ROOTFS" env -i PATH="$PATH_IN" HOME=/root LANG=C.UTF-8 "$@"; }

# "uid:gid" of USER in the root filesystem (its accounts have their own ids, not the host's).
rootfs_owner() { # USER
    local ids
    ids=$(awk -F: -v u="$1" '$1 == u { print $3 ":" $4 }' "$ROOTFS/etc/passwd")
    [[ -n $ids ]] || die "no user $1 in $ROOTFS"
    echo "$ids"
}

configure_users() {
    local u uid gid
    for u in "${DEMO_USERS[@]}"; do
        # The same uid on the host as in the cluster (dev/slurm.sh install creates them alike).
        id -u "$u" >/dev/null 2>&1 || { useradd -m -s /bin/bash "$u"; log "created user $u on this machine"; }
        uid=$(id -u "$u")
        gid=$(id -g "$u")
        grep -q "^$u:" "$ROOTFS/etc/group" || in_root groupadd -g "$gid" "$u"
        if ! grep -q "^$u:" "$ROOTFS/etc/passwd"; then
            in_root useradd -u "$uid" -g "$gid" -M -d "/home/$u" -s /bin/bash "$u"
            log "created user $u ($uid:$gid) in the root filesystem"
        fi
        [[ $(rootfs_owner "$u") == "$uid:$gid" ]] \
            || die "$u has ids $(rootfs_owner "$u") in $ROOTFS but $uid:$gid on this machine"
        if [[ ! -d $HOMES/$u ]]; then
            install -d -m 0750 -o "$uid" -g "$gid" "$HOMES/$u"
            cp -rT "$ROOTFS/etc/skel" "$HOMES/$u"
            chown -R "$uid:$gid" "$HOMES/$u"
        fi
    done
    if ! grep -q "^$ACCOUNT:" "$ROOTFS/etc/passwd"; then
        # A POSIX login shell: the operator quotes every command for sh.
        in_root useradd --system --create-home --home-dir "$ACCOUNT_HOME" --shell /bin/sh "$ACCOUNT"
        log "created service account $ACCOUNT in the root filesystem"
    fi
    # No password at all ('*'), but not locked ('!'): sshd refuses key logins to locked accounts.
    [[ $(awk -F: -v u="$ACCOUNT" '$1 == u { print $2 }' "$ROOTFS/etc/shadow") == '*' ]] \
        || in_root usermod -p '*' "$ACCOUNT"
    grep -q "^$REST_USER:" "$ROOTFS/etc/passwd" \
        || in_root useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$REST_USER"
}

configure_sudoers() {
    local f=$ROOTFS/etc/sudoers.d/batchnotebook users
    users=$(IFS=,; echo "${DEMO_USERS[*]}")
    cat >"$f.new" <<EOT
# Written by BatchNotebook dev/trixie.sh: the operator's account may run commands as the demo
# users (submit and cancel their jobs), without a password, and as nobody else.
$ACCOUNT ALL=($users) NOPASSWD: ALL
EOT
    in_root visudo -cq -f /etc/sudoers.d/batchnotebook.new || { rm -f "$f.new"; die "the sudoers drop-in does not parse"; }
    chmod 0440 "$f.new"
    if cmp -s "$f.new" "$f"; then rm -f "$f.new"; else mv -f "$f.new" "$f"; fi
}

configure_sshd() {
    [[ -s $ROOTFS/etc/ssh/ssh_host_ed25519_key ]] || in_root ssh-keygen -A
    put_file 0644 0:0 "$ROOTFS/etc/ssh/sshd_config.d/batchnotebook.conf" <<EOT
# Written by BatchNotebook dev/trixie.sh; edits are overwritten.  The first value read wins, and
# this drop-in is read before the rest of sshd_config.
Port 22
AllowUsers $ACCOUNT
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM's session modules (pam_loginuid) fail without systemd; key logins need none of PAM.
UsePAM no
# The operator multiplexes up to 8 commands on one connection; sshd's default is 10.
MaxSessions 32
LogLevel VERBOSE
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
EOT
    local owner
    owner=$(rootfs_owner "$ACCOUNT")
    install -d -m 0700 -o "${owner%:*}" -g "${owner#*:}" "$ROOTFS$ACCOUNT_HOME/.ssh"
    touch "$ROOTFS$ACCOUNT_HOME/.ssh/authorized_keys"
    chown "$owner" "$ROOTFS$ACCOUNT_HOME/.ssh/authorized_keys"
    chmod 0600 "$ROOTFS$ACCOUNT_HOME/.ssh/authorized_keys"
}

configure_keys() {
    local munge slurm
    munge=$(rootfs_owner munge)
    slurm=$(rootfs_owner slurm)
    if [[ ! -s $ROOTFS/etc/munge/munge.key ]]; then
        dd if=/dev/urandom of="$ROOTFS/etc/munge/munge.key" bs=1024 count=1 status=none
        log "created munge key"
    fi
    chown "$munge" "$ROOTFS/etc/munge/munge.key"
    chmod 0400 "$ROOTFS/etc/munge/munge.key"
    install -d -m 0755 -o "${slurm%:*}" -g "${slurm#*:}" "$ROOTFS$(dirname "$JWT_KEY")"
    if [[ ! -s $ROOTFS$JWT_KEY ]]; then
        dd if=/dev/urandom of="$ROOTFS$JWT_KEY" bs=32 count=1 status=none
        log "created JWT key $ROOTFS$JWT_KEY"
    fi
    chown "$slurm" "$ROOTFS$JWT_KEY"
    chmod 0600 "$ROOTFS$JWT_KEY"
}

configure_hosts() {
    local node
    {
        echo "# Written by BatchNotebook dev/trixie.sh; edits are overwritten."
        echo "127.0.0.1 localhost"
        echo "::1 localhost ip6-localhost ip6-loopback"
        for node in "${NODES[@]}"; do echo "${ADDR[$node]} $node"; done
        echo "$BRIDGE_ADDR tx-gateway"
    } | put_file 0644 0:0 "$ROOTFS/etc/hosts"
    # No name server is reachable from the nodes: every reverse lookup of a client address
    # (slurmrestd does one per request) waited 10 s for the resolver's timeouts.  Files only.
    put_file 0644 0:0 "$ROOTFS/etc/resolv.conf" </dev/null
    sed -i 's/^hosts:.*/hosts:          files/' "$ROOTFS/etc/nsswitch.conf"
    # This machine resolves the nodes too (ssh, curl, the hub's configuration).
    for node in "${NODES[@]}"; do
        if ! grep -qE "^${ADDR[$node]//./\\.}[[:space:]]+$node([[:space:]]|\$)" /etc/hosts; then
            # The file may end without a newline.
            [[ -z $(tail -c1 /etc/hosts) ]] || echo >>/etc/hosts
            echo "${ADDR[$node]} $node" >>/etc/hosts
            log "added $node to /etc/hosts"
        fi
    done
}

configure_slurm() {
    local slurm node pass=""
    slurm=$(rootfs_owner slurm)
    install -d -m 0755 -o "${slurm%:*}" -g "${slurm#*:}" "$ROOTFS/var/spool/slurmctld"
    for node in "${COMPUTE[@]}"; do install -d -m 0755 "$ROOTFS/var/spool/slurmd/$node"; done
    put_file 0644 0:0 "$ROOTFS/etc/slurm/slurm.conf" <<EOT
# Written by BatchNotebook dev/trixie.sh; edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=tx-ctl
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
# JWT lets slurmrestd (and scontrol token) authenticate users.
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
StateSaveLocation=/var/spool/slurmctld
# The nodes share one root file system: one spool directory each.
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
MpiDefault=none
# No cgroups (see cgroup.conf): they left scancel unable to kill jobs on this kind of machine.
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
AccountingStorageHost=tx-ctl
# Reject jobs whose user/account has no association ("Invalid account ...").
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
SlurmctldDebug=info
SlurmdDebug=info
# Advertise more CPUs than the real cores so several one-CPU jobs run at once on each node.
SlurmdParameters=config_overrides
NodeName=tx-c[1-2] CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=tx-c[1-2] Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=tx-c[1-2] Default=NO MaxTime=INFINITE State=UP
EOT
    # 24.11 loads a cgroup plugin in slurmd (autodetect) even with proctrack/linuxproc and
    # task/none; the nodes have no cgroup file system mounted.
    put_file 0644 0:0 "$ROOTFS/etc/slurm/cgroup.conf" <<EOT
# Written by BatchNotebook dev/trixie.sh; edits are overwritten.
CgroupPlugin=disabled
EOT
    # Keep the database password across re-runs; it lives only in this 0600 file.
    [[ -f $ROOTFS/etc/slurm/slurmdbd.conf ]] \
        && pass=$(sed -n 's/^StoragePass=//p' "$ROOTFS/etc/slurm/slurmdbd.conf")
    [[ -n $pass ]] || pass=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    put_file 0600 "$slurm" "$ROOTFS/etc/slurm/slurmdbd.conf" <<EOT
# Written by BatchNotebook dev/trixie.sh; edits are overwritten.
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
DbdHost=tx-ctl
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$pass
StorageLoc=$DB_NAME
DebugLevel=info
EOT
    if [[ ! -d $ROOTFS/var/lib/mysql/mysql ]]; then
        log "initialising the MariaDB data directory"
        in_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null \
            || die "mariadb-install-db failed"
    fi
}

configure() {
    need_rootfs
    mkdir -p "$HOMES"
    chmod 0755 "$HOMES"
    configure_users
    configure_sudoers
    configure_sshd
    configure_keys
    configure_hosts
    configure_slurm
}

# ---------------------------------------------------------------------------------------------
# the network: a bridge on this machine, a namespace and a veth pair per node

host_veth() { echo "v$1"; }   # vtx-ctl, vtx-login, ... (at most 15 characters)

ensure_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || { ip link add "$BRIDGE" type bridge; log "created bridge $BRIDGE"; }
    ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

ensure_netns() { # NODE
    local node=$1 veth
    veth=$(host_veth "$node")
    [[ -e /run/netns/$node ]] || ip netns add "$node"
    if ip link show "$veth" >/dev/null 2>&1 && ! ip -n "$node" link show eth0 >/dev/null 2>&1; then
        ip link del "$veth"   # its peer is not in the namespace (the namespace was made anew)
    fi
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name "${veth}p"
        ip link set "${veth}p" netns "$node"
        ip -n "$node" link set "${veth}p" name eth0
    fi
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    ip -n "$node" addr replace "${ADDR[$node]}/24" dev eth0
    ip -n "$node" link set lo up
    ip -n "$node" link set eth0 up
    ip -n "$node" route replace default via "$BRIDGE_ADDR"
}

# The nodes reach this machine's other networks (the Kubernetes node's 10.201.N.0/24, where the
# hub's NodePort is) through it, and those reach the nodes back.
FORWARD_RULES=("-i $BRIDGE -s $SUBNET" "-o $BRIDGE -d $SUBNET")
ensure_forwarding() {
    if [[ $(sysctl -n net.ipv4.ip_forward) != 1 ]]; then
        sysctl -qw net.ipv4.ip_forward=1
        log "enabled net.ipv4.ip_forward"
    fi
    # Only when the FORWARD chain drops by default (dockerd sets that): accept our subnet.
    [[ $(iptables -S FORWARD 2>/dev/null | head -n1) == "-P FORWARD ACCEPT" ]] && return 0
    local rule
    for rule in "${FORWARD_RULES[@]}"; do
        # shellcheck disable=SC2086 # a rule is words
        iptables -C FORWARD $rule -m comment --comment batchnotebook-trixie -j ACCEPT 2>/dev/null \
            || { iptables -I FORWARD 1 $rule -m comment --comment batchnotebook-trixie -j ACCEPT; log "iptables: FORWARD $rule ACCEPT"; }
    done
}

purge_network() {
    local node rule
    for node in "${NODES[@]}"; do
        if [[ -e /run/netns/$node ]]; then ip netns delete "$node"; fi
        ip link del "$(host_veth "$node")" 2>/dev/null || true
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
    for rule in "${FORWARD_RULES[@]}"; do
        # shellcheck disable=SC2086
        while iptables -C FORWARD $rule -m comment --comment batchnotebook-trixie -j ACCEPT 2>/dev/null; do
            iptables -D FORWARD $rule -m comment --comment batchnotebook-trixie -j ACCEPT
        done
    done
    log "removed the namespaces, the bridge $BRIDGE and our iptables rules"
}

# ---------------------------------------------------------------------------------------------
# nodes: a process that holds each node's namespaces, and commands run inside them

# True if PID's network namespace is NODE's.
in_netns() { # PID NODE
    local ns
    [[ -e /run/netns/$2 ]] || return 1
    ns=$(stat -L -c %i "/run/netns/$2") || return 1
    [[ $(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null) == "$ns" ]]
}

# The pid of the process that holds NODE's UTS and mount namespaces (a chrooted sleep).
anchor_pid() { # NODE
    local pid
    pid=$(pidfile_pid "$RUN/$1/ns.pid") && pid_named "$pid" sleep && in_netns "$pid" "$1" && echo "$pid"
}

# Set up inside the node's new mount namespace (private propagation: nothing leaks out), then
# becomes the node's anchor: /proc, /sys (of the node's network namespace), /dev, a private /run
# and /tmp, the shared homes, the root filesystem as root.
# shellcheck disable=SC2016 # expanded by the inner shell
ANCHOR_SCRIPT='set -e
root=$1 node=$2 homes=$3
hostname "$node"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -m 1777 "$root/run/lock"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount --bind "$homes" "$root/home"
exec chroot "$root" /bin/sleep infinity'

start_node() { # NODE
    local node=$1
    anchor_pid "$node" >/dev/null && return 0
    ensure_netns "$node"
    # No --fork: unshare itself enters the new namespaces and execs, so the recorded pid is the
    # anchor's (only a new pid namespace would need the fork).
    spawn "$RUN/$node/ns.pid" "$LOGS/$node/ns.log" ip netns exec "$node" \
        unshare --uts --mount --propagation private -- bash -c "$ANCHOR_SCRIPT" anchor "$ROOTFS" "$node" "$HOMES"
    wait_until 10 anchor_pid "$node" || die_with_logs "node $node did not start" "$LOGS/$node/ns.log"
}

stop_node() { # NODE
    local node=$1 pid left
    if pid=$(anchor_pid "$node"); then
        stop_pid "$node" "$pid" 5 anchor_pid "$node"
    fi
    rm -f "$RUN/$node/ns.pid"
    if [[ -e /run/netns/$node ]]; then
        left=$(ip netns pids "$node" 2>/dev/null | tr '\n' ' ')
        [[ -z $left ]] || log "WARNING: processes we did not record still run in $node: $left"
    fi
}

# The command that runs CMD in NODE: its network, UTS and mount namespaces, its root, a clean
# environment.
node_cmd() { # NODE CMD...
    local node=$1 pid
    shift
    pid=$(anchor_pid "$node") || die "node $node does not run (dev/trixie.sh start)"
    NODE_CMD=(nsenter -t "$pid" -n -u -m -r -w -- env -i PATH="$PATH_IN" HOME=/root LANG=C.UTF-8
              TERM="${TERM:-dumb}" "$@")
}

node_run() { # NODE CMD...
    node_cmd "$@"
    "${NODE_CMD[@]}"
}

# ---------------------------------------------------------------------------------------------
# daemons: $RUN/NODE/NAME.pid, $LOGS/NODE/NAME.log; each runs in the foreground, so the pid we
# start is the daemon's

daemon_comm() {
    case $1 in
        mariadb) echo mariadbd ;;
        *) echo "$1" ;;
    esac
}

node_daemon_pid() { # NODE NAME
    local pid
    pid=$(pidfile_pid "$RUN/$1/$2.pid") && pid_named "$pid" "$(daemon_comm "$2")" \
        && in_netns "$pid" "$1" && echo "$pid"
}

# Starts NAME in NODE unless it runs, then waits up to SECS for READY while it runs.
start_daemon() { # NODE NAME SECS READY... -- CMD...
    local node=$1 name=$2 secs=$3 ready=() rc=0
    shift 3
    while [[ $1 != -- ]]; do ready+=("$1"); shift; done
    shift
    node_daemon_pid "$node" "$name" >/dev/null && return 0
    node_cmd "$node" "$@"
    spawn "$RUN/$node/$name.pid" "$LOGS/$node/$name.log" "${NODE_CMD[@]}"
    wait_ready "$secs" node_daemon_pid "$node" "$name" -- "${ready[@]}" || rc=$?
    case $rc in
        0) ;;
        2) die_with_logs "$name on $node exited during start-up" "$LOGS/$node/$name.log" ;;
        *) die_with_logs "$name on $node not ready after $secs s" "$LOGS/$node/$name.log" ;;
    esac
}

stop_daemon() { # NODE NAME SECS
    local pid
    if pid=$(node_daemon_pid "$1" "$2"); then
        stop_pid "$2 on $1" "$pid" "$3" node_daemon_pid "$1" "$2"
    fi
    rm -f "$RUN/$1/$2.pid"
}

# ---------------------------------------------------------------------------------------------
# start

munge_ok() { node_run "$1" bash -c 'munge -n </dev/null | unmunge' ; }
mariadb_ok() { node_run tx-ctl mariadb-admin --socket=/run/mysqld/mysqld.sock ping; }
ctld_up() { node_run tx-login scontrol ping 2>/dev/null | grep -q 'is UP'; }
rest_ok() { curl -s -o /dev/null "http://${ADDR[tx-ctl]}:$REST_PORT/"; }
ssh_ok() { node_run tx-login bash -c 'exec 3<>/dev/tcp/127.0.0.1/22'; }
dbd_ok() { node_run tx-ctl bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'; }
slurmd_ok() { node_run "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6818'; }

start_munged() { # NODE
    node_run "$1" install -d -m 0755 -o munge -g munge /run/munge
    # As the munge user (munged refuses root); setpriv execs, so the recorded pid is munged's.
    start_daemon "$1" munged 15 munge_ok "$1" -- \
        setpriv --reuid=munge --regid=munge --init-groups -- /usr/sbin/munged -F
}

ensure_db() {
    local pass
    pass=$(sed -n 's/^StoragePass=//p' "$ROOTFS/etc/slurm/slurmdbd.conf")
    node_run tx-ctl mariadb --socket=/run/mysqld/mysqld.sock <<EOT
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON $DB_NAME.* TO 'slurm'@'localhost';
EOT
}

# Cluster, accounts and users in the accounting database.
ensure_accounts() {
    local assocs a u
    assocs=$(node_run tx-ctl sacctmgr -n -P show assoc "cluster=$CLUSTER" format=account,user 2>/dev/null || true)
    grep -qx "root|root" <<<"$assocs" || node_run tx-ctl sacctmgr -i add cluster "$CLUSTER" >/dev/null
    for a in research physics; do
        grep -q "^$a|" <<<"$assocs" \
            || node_run tx-ctl sacctmgr -i add account "$a" "cluster=$CLUSTER" "Description=$a" "Organization=demo" >/dev/null
    done
    for u in "${DEMO_USERS[@]}" "$ACCOUNT"; do
        grep -qx "research|$u" <<<"$assocs" \
            || node_run tx-ctl sacctmgr -i add user "$u" account=research "cluster=$CLUSTER" DefaultAccount=research >/dev/null
    done
}

nodes_idle() {
    local states
    states=$(node_run tx-login sinfo -h -N -p debug -o '%N %t' 2>/dev/null) || return 1
    local node st ok=0
    for node in "${COMPUTE[@]}"; do
        st=$(awk -v n="$node" '$1 == n { print $2 }' <<<"$states")
        case $st in
            idle | mix | alloc) ok=$((ok + 1)) ;;
            drain* | drng | down* | fail*)
                # Left over from an earlier unclean stop: bring the node back.
                node_run tx-login scontrol update "nodename=$node" state=resume >/dev/null 2>&1 || true ;;
        esac
    done
    [[ $ok == "${#COMPUTE[@]}" ]]
}

cmd_start() {
    local t0=$SECONDS node
    need_rootfs
    configure
    mkdir -p "$RUN" "$LOGS"
    ensure_bridge
    ensure_forwarding
    for node in "${NODES[@]}"; do start_node "$node"; done
    for node in "${NODES[@]}"; do start_munged "$node"; done
    node_run tx-ctl install -d -m 0755 -o mysql -g mysql /run/mysqld
    # Socket only: slurmdbd connects to localhost through /run/mysqld/mysqld.sock.
    start_daemon tx-ctl mariadb 60 mariadb_ok -- /usr/sbin/mariadbd --user=mysql \
        --datadir=/var/lib/mysql --pid-file=/run/mysqld/mysqld.pid \
        --socket=/run/mysqld/mysqld.sock --skip-networking --innodb-buffer-pool-size=128M
    ensure_db
    start_daemon tx-ctl slurmdbd 60 dbd_ok -- /usr/sbin/slurmdbd -D
    ensure_accounts
    start_daemon tx-ctl slurmctld 60 ctld_up -- /usr/sbin/slurmctld -D
    for node in "${COMPUTE[@]}"; do
        start_daemon "$node" slurmd 30 slurmd_ok "$node" -- /usr/sbin/slurmd -D -N "$node"
    done
    # SLURM_JWT=daemon: every request carries the caller's own JWT (X-SLURM-USER-TOKEN).
    # slurmrestd refuses to run as root or as SlurmUser.
    start_daemon tx-ctl slurmrestd 30 rest_ok -- env SLURM_JWT=daemon \
        setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups -- \
        /usr/sbin/slurmrestd -a rest_auth/jwt "0.0.0.0:$REST_PORT"
    node_run tx-login install -d -m 0755 /run/sshd
    start_daemon tx-login sshd 15 ssh_ok -- /usr/sbin/sshd -D -e
    wait_until 60 nodes_idle || die_with_logs "the compute nodes are not idle after 60 s" \
        "$LOGS/tx-ctl/slurmctld.log" "$LOGS/tx-c1/slurmd.log" "$LOGS/tx-c2/slurmd.log"
    log "running in $((SECONDS - t0)) s: REST http://${ADDR[tx-ctl]}:$REST_PORT, ssh batchnotebook@${ADDR[tx-login]}:22"
}

# ---------------------------------------------------------------------------------------------
# stop, status

# Cancel every job first: slurmstepd otherwise keeps retrying and slurmd hangs on stop.
cancel_all_jobs() {
    anchor_pid tx-ctl >/dev/null && ctld_up || return 0
    local ids
    ids=$(node_run tx-ctl squeue -h -o %A 2>/dev/null || true)
    [[ -n $ids ]] || return 0
    log "cancelling jobs: ${ids//$'\n'/ }"
    # shellcheck disable=SC2086
    node_run tx-ctl scancel $ids 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while [[ -n $(node_run tx-ctl squeue -h -t running,completing,pending -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do
        sleep 0.2
    done
}

cmd_stop() {
    local node
    cancel_all_jobs
    stop_daemon tx-ctl slurmrestd 15
    for node in "${COMPUTE[@]}"; do stop_daemon "$node" slurmd 15; done
    stop_daemon tx-ctl slurmctld 15
    stop_daemon tx-ctl slurmdbd 15
    stop_daemon tx-ctl mariadb 30
    stop_daemon tx-login sshd 10
    for node in "${NODES[@]}"; do stop_daemon "$node" munged 10; done
    for node in "${NODES[@]}"; do stop_node "$node"; done
    if [[ ${1:-} == --purge ]]; then purge_network; fi
    log "stopped"
}

NODE_DAEMONS=("tx-ctl munged" "tx-ctl mariadb" "tx-ctl slurmdbd" "tx-ctl slurmctld"
              "tx-ctl slurmrestd" "tx-login munged" "tx-login sshd" "tx-c1 munged"
              "tx-c1 slurmd" "tx-c2 munged" "tx-c2 slurmd")

cmd_status() {
    local rc=0 entry node name pid
    for node in "${NODES[@]}"; do
        if pid=$(anchor_pid "$node"); then
            printf '%-9s %-11s running (pid %s)\n' "$node" namespaces "$pid"
        else
            printf '%-9s %-11s stopped\n' "$node" namespaces
            rc=1
        fi
    done
    for entry in "${NODE_DAEMONS[@]}"; do
        read -r node name <<<"$entry"
        if pid=$(node_daemon_pid "$node" "$name"); then
            printf '%-9s %-11s running (pid %s)\n' "$node" "$name" "$pid"
        else
            printf '%-9s %-11s stopped\n' "$node" "$name"
            rc=1
        fi
    done
    if anchor_pid tx-login >/dev/null && ctld_up; then
        node_run tx-login sinfo -N -o '%N %P %t' || true
    fi
    return $rc
}

# The working directory: $TRIXIE_CWD if set, else the home of the user a leading `runuser -u
# USER` or `sudo -u USER` names (sbatch writes the job's output there, on the shared /home), else /.
cmd_exec() { # NODE CMD...
    [[ $# -ge 2 ]] || die "usage: $0 exec NODE CMD..."
    [[ -n ${ADDR[$1]:-} ]] || die "no node $1 (nodes: ${NODES[*]})"
    local node=$1 dir=${TRIXIE_CWD:-/}
    shift
    if [[ -z ${TRIXIE_CWD:-} && ($1 == runuser || $1 == sudo) && ${2:-} == -u && -n ${3:-} ]]; then
        dir=$(awk -F: -v u="$3" '$1 == u { print $6 }' "$ROOTFS/etc/passwd")
        dir=${dir:-/}
    fi
    # shellcheck disable=SC2016 # expanded by the inner shell
    node_cmd "$node" sh -c 'cd "$1" && shift && exec "$@"' exec "$dir" "$@"
    exec "${NODE_CMD[@]}"
}

cmd_authorize() { # PUBKEY_FILE
    local file=${1:-} key keys=$ROOTFS$ACCOUNT_HOME/.ssh/authorized_keys
    [[ -f $file ]] || die "usage: $0 authorize PUBKEY_FILE"
    ssh-keygen -l -f "$file" >/dev/null || die "$file is not a public key"
    need_rootfs
    [[ -f $keys ]] || configure
    key=$(head -n1 "$file")
    # restrict: no forwarding, no pty, no ~/.ssh/rc: the operator only runs commands.
    if grep -qF -- "$key" "$keys"; then
        log "already authorized: $(ssh-keygen -l -f "$file")"
    else
        printf 'restrict %s\n' "$key" >>"$keys"
        log "authorized for $ACCOUNT@${ADDR[tx-login]}: $(ssh-keygen -l -f "$file")"
    fi
}

cmd_host_key() {
    need_rootfs
    cat "$ROOTFS/etc/ssh/ssh_host_ed25519_key.pub"
}

case ${1:-} in
    build | start | stop) take_lock /run/lock/batchnotebook-trixie.lock ;;
esac
case ${1:-} in
    build) cmd_build ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status ;;
    exec) shift; cmd_exec "$@" ;;
    authorize) take_lock /run/lock/batchnotebook-trixie.lock; cmd_authorize "${2:-}" ;;
    host-key) cmd_host_key ;;
    jwt-key-path) echo "$ROOTFS$JWT_KEY" ;;
    *)
        echo "usage: $0 build|start|stop [--purge]|status|exec NODE CMD...|authorize PUBKEY_FILE|host-key|jwt-key-path" >&2
        exit 2
        ;;
esac
