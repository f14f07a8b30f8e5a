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
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=sshd.sh

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${BATCHNOTEBOOK_STATE:-$REPO/.dev}
DIR=$STATE/sshd
RUN=$STATE/run
LOGS=$STATE/logs
PORT=${BATCHNOTEBOOK_SSHD_PORT:-2222}
# A node's pods reach this machine at its end of the node's veth pair, not on loopback.
ADDRESS=${BATCHNOTEBOOK_SSHD_ADDRESS:-127.0.0.1}
PIDFILE=$RUN/sshd.pid
SSHD=/usr/sbin/sshd
ACCOUNT=batchnotebook
ACCOUNT_HOME=/var/lib/batchnotebook
RUN_AS_USERS=alice,bob
SUDOERS=/etc/sudoers.d/batchnotebook
# The operator multiplexes up to 8 commands on one connection; sshd's default is 10.
MAX_SESSIONS=32

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
    # Checked before it is installed: a drop-in that does not parse breaks sudo for everyone.
    visudo -cq -f "$tmp" || { rm -f "$tmp"; die "the sudoers drop-in does not parse"; }
    put_file 0440 root:root "$SUDOERS" <"$tmp"
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
ListenAddress $ADDRESS
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
    pid=$(pidfile_pid "$PIDFILE") && our_sshd "$pid" && echo "$pid"
}

our_sshd() { pid_runs "$1" "-f $DIR/sshd_config"; }

serving() { running_pid && port_listening "$PORT"; }

cmd_install() {
    [[ $(id -u) == 0 ]] || die "install must run as root"
    # The package must not start the system's sshd (apt_install sees to that): it is not ours.
    apt_install openssh-server sudo
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
    port_listening "$PORT" && die "something else listens on 127.0.0.1:$PORT"
    echo "=== $(date '+%F %T') starting sshd on 127.0.0.1:$PORT" >>"$LOGS/sshd.log"
    # -D: no fork, so the process we start is the listener (and writes PIDFILE itself, removing
    # it when it exits); -E: log to our file (what it prints before reading its config goes to
    # sshd.out). sshd re-executes itself per connection, hence the absolute path.
    spawn "$PIDFILE" "$LOGS/sshd.out" "$SSHD" -D -f "$DIR/sshd_config" -E "$LOGS/sshd.log"
    wait_until 15 serving || die_with_logs "sshd did not start" "$LOGS/sshd.out" "$LOGS/sshd.log"
    log "sshd runs on 127.0.0.1:$PORT (pid $(running_pid))"
}

cmd_stop() {
    local pid children child
    pid=$(running_pid) || { rm -f "$PIDFILE"; return 0; }
    # Stopping the listener alone leaves established connections up: end them too (each is a
    # child of the listener), so that clients see the outage.
    children=$(ps -o pid= --ppid "$pid" || true)
    kill -TERM "$pid" 2>/dev/null || true   # the listener first: it accepts nothing more
    for child in $children; do kill -TERM "$child" 2>/dev/null || true; done
    stop_pid sshd "$pid" 10 our_sshd "$pid"   # waits for it; SIGKILL if it ignores SIGTERM
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
case ${1:-} in
    install) take_lock /run/lock/batchnotebook-sshd.lock 600; cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    host-key) cmd_host_key ;;
    *)
        echo "usage: $0 install|start|stop|status|host-key" >&2
        exit 2
        ;;
esac
