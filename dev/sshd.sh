#!/usr/bin/env bash
# A login node on loopback for the ssh transport: its own sshd (Debian's openssh-server binary,
# its own config and host key), a service account that may run commands as the demo users
# through sudo, and the operator's key pair.  Never touches the system's sshd or its config.
#
#   dev/sshd.sh install    openssh-server and sudo if missing; the account batchnotebook (key
#                          logins only), its sudoers drop-in (may run anything as alice or bob,
#                          nothing else); host key, operator key pair and sshd_config in STATE/sshd
#   dev/sshd.sh start      start sshd on 127.0.0.1:PORT unless it runs
#   dev/sshd.sh stop       stop sshd and end every connection it holds (a real outage)
#   dev/sshd.sh status     exit 0 if it runs
#   dev/sshd.sh host-key   print the host public key (what connection.ssh.hostKey pins)
#
# STATE is $BATCHNOTEBOOK_STATE or <repo>/.dev, PORT is $BATCHNOTEBOOK_SSHD_PORT or 2222.
# Files: STATE/sshd/{sshd_config,ssh_host_ed25519_key,id_ed25519,authorized_keys}, pid file
# STATE/run/sshd.pid, log STATE/logs/sshd.log (LogLevel VERBOSE: one "Accepted publickey" per
# connection, one "Starting session" per command).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${BATCHNOTEBOOK_STATE:-$REPO/.dev}
DIR=$STATE/sshd
RUN=$STATE/run
LOGS=$STATE/logs
PORT=${BATCHNOTEBOOK_SSHD_PORT:-2222}
PIDFILE=$RUN/sshd.pid
SSHD=/usr/sbin/sshd
ACCOUNT=batchnotebook
ACCOUNT_HOME=/var/lib/batchnotebook
RUN_AS_USERS=alice,bob
SUDOERS=/etc/sudoers.d/batchnotebook
# The operator multiplexes up to 8 commands on one connection; sshd's default is 10.
MAX_SESSIONS=32

log() { echo "sshd.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

install_packages() {
    local missing=() p
    for p in openssh-server sudo; do installed "$p" || missing+=("$p"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    # The package must not start the system's sshd (no systemd here, and it is not ours).
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -q -y) status=0
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >/dev/null || status=$?
    if [[ $status == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" \
            >"/tmp/sshd-apt-install.$$.log" 2>&1 || status=$?
    fi
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ $status != 0 ]]; then
        tail -30 "/tmp/sshd-apt-install.$$.log" >&2 || true
        die "apt-get install failed"
    fi
    rm -f "/tmp/sshd-apt-install.$$.log"
}

install_account() {
    local user
    for user in ${RUN_AS_USERS//,/ }; do
        id -u "$user" >/dev/null 2>&1 || { useradd -m -s /bin/bash "$user"; log "created user $user"; }
    done
    if ! id -u "$ACCOUNT" >/dev/null 2>&1; then
        # A POSIX login shell: the operator quotes every command for sh.
        useradd --system --create-home --home-dir "$ACCOUNT_HOME" --shell /bin/sh "$ACCOUNT"
        log "created service account $ACCOUNT"
    fi
    # No password at all ('*'), but not locked ('!'): sshd refuses key logins to locked accounts.
    [[ $(getent shadow "$ACCOUNT" | cut -d: -f2) == '*' ]] || usermod -p '*' "$ACCOUNT"
}

install_sudoers() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Written by BatchNotebook dev/sshd.sh: the operator's account may run commands as the demo users
# (submit and cancel their jobs), without a password, and as nobody else.
$ACCOUNT ALL=($RUN_AS_USERS) NOPASSWD: ALL
EOF
    visudo -cq -f "$tmp" || { rm -f "$tmp"; die "the sudoers drop-in does not parse"; }
    if ! cmp -s "$tmp" "$SUDOERS" 2>/dev/null; then
        install -m 0440 -o root -g root "$tmp" "$SUDOERS"
        log "wrote $SUDOERS"
    fi
    rm -f "$tmp"
    visudo -cq || die "sudoers no longer parses after writing $SUDOERS"
}

install_keys() {
    install -d -m 0755 "$DIR"
    [[ -s $DIR/ssh_host_ed25519_key ]] \
        || ssh-keygen -q -t ed25519 -N '' -C "batchnotebook-dev-host" -f "$DIR/ssh_host_ed25519_key"
    [[ -s $DIR/id_ed25519 ]] \
        || ssh-keygen -q -t ed25519 -N '' -C "batchnotebook-operator" -f "$DIR/id_ed25519"
    chmod 0600 "$DIR/ssh_host_ed25519_key" "$DIR/id_ed25519"
}

# sshd_config and authorized_keys follow the current port and key pair (a rotated key pair is
# authorized by the next start).
write_config() {
    install -d -m 0755 "$DIR" "$RUN" "$LOGS"
    # restrict: no forwarding, no pty, no ~/.ssh/rc: the operator only runs commands.
    printf 'restrict %s\n' "$(cat "$DIR/id_ed25519.pub")" >"$DIR/authorized_keys.new"
    chmod 0644 "$DIR/authorized_keys.new"
    mv -f "$DIR/authorized_keys.new" "$DIR/authorized_keys"
    cat >"$DIR/sshd_config.new" <<EOF
# Written by BatchNotebook dev/sshd.sh; edits are overwritten.
Port $PORT
ListenAddress 127.0.0.1
HostKey "$DIR/ssh_host_ed25519_key"
PidFile "$PIDFILE"
AuthorizedKeysFile "$DIR/authorized_keys"
# The keys live in the project's state directory, which may sit below a world-writable one (a
# clone in /tmp); StrictModes would refuse them there. This sshd serves loopback tests only.
StrictModes no
AllowUsers $ACCOUNT
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM's session modules (pam_loginuid) fail without systemd; key logins need none of PAM.
UsePAM no
MaxSessions $MAX_SESSIONS
LogLevel VERBOSE
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
EOF
    mv -f "$DIR/sshd_config.new" "$DIR/sshd_config"
    # sshd's privilege-separation directory (the package leaves it to systemd's tmpfiles).
    install -d -m 0755 /run/sshd
    "$SSHD" -t -f "$DIR/sshd_config" || die "$DIR/sshd_config is invalid"
}

# The pid of our sshd listener, if it runs: the pid file must point at an sshd started with our
# config file (a reused pid, or another sshd, is not ours).
running_pid() {
    local pid
    [[ -f $PIDFILE ]] || return 1
    pid=$(tr -dc 0-9 <"$PIDFILE")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-f $DIR/sshd_config" || return 1
    echo "$pid"
}

listening() { ss -Hltn "sport = :$PORT" | grep -q .; }

cmd_install() {
    [[ $(id -u) == 0 ]] || die "install must run as root"
    install_packages
    install_account
    install_sudoers
    install_keys
    write_config
    log "install done ($ACCOUNT@127.0.0.1:$PORT, keys in $DIR)"
}

cmd_start() {
    local pid
    if pid=$(running_pid); then
        log "sshd already runs (pid $pid)"
        return 0
    fi
    [[ -s $DIR/id_ed25519 ]] || die "run dev/sshd.sh install first"
    write_config
    listening && die "something else listens on 127.0.0.1:$PORT"
    rm -f "$PIDFILE"
    echo "=== $(date '+%F %T') starting sshd on 127.0.0.1:$PORT" >>"$LOGS/sshd.log"
    # -D: no fork, so the process we start is the listener; -E: log to our file (what it prints
    # before reading its config goes to sshd.out). sshd re-executes itself per connection, hence
    # the absolute path.
    setsid "$SSHD" -D -f "$DIR/sshd_config" -E "$LOGS/sshd.log" </dev/null >>"$LOGS/sshd.out" 2>&1 9>&- &
    local deadline=$((SECONDS + 15))
    until running_pid >/dev/null && listening; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$LOGS/sshd.out" "$LOGS/sshd.log" >&2
            die "sshd did not start"
        fi
        sleep 0.1
    done
    log "sshd runs on 127.0.0.1:$PORT (pid $(running_pid))"
}

cmd_stop() {
    local pid children child i
    pid=$(running_pid) || { rm -f "$PIDFILE"; return 0; }
    # Stopping the listener alone leaves established connections up: end them too (each is a
    # child of the listener), so that clients see the outage.
    children=$(ps -o pid= --ppid "$pid" || true)
    kill -TERM "$pid" 2>/dev/null || true
    for child in $children; do kill -TERM "$child" 2>/dev/null || true; done
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$PIDFILE"
    log "sshd stopped"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        echo "sshd running (pid $pid) on 127.0.0.1:$PORT"
    else
        echo "sshd stopped"
        return 1
    fi
}

cmd_host_key() {
    [[ -s $DIR/ssh_host_ed25519_key.pub ]] || die "run dev/sshd.sh install first"
    cat "$DIR/ssh_host_ed25519_key.pub"
}

# Concurrent installs (dev stack and test suite) would race on the account and the packages.
lock() {
    exec 9>/run/lock/batchnotebook-sshd.lock
    flock -w 600 9 || die "could not get /run/lock/batchnotebook-sshd.lock within 600 s"
}

case ${1:-} in
    install) lock; cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    host-key) cmd_host_key ;;
    *)
        echo "usage: $0 install|start|stop|status|host-key" >&2
        exit 2
        ;;
esac
