#!/bin/sh
# Prepare this host for the A4PS sandbox backends: docker + gVisor (runsc), bubblewrap, and the
# a4ps-sandbox:latest image built offline. Idempotent, bounded waits, always exits 0 so a test
# command can call it unconditionally; the backends report what is missing on their own.
set -u

IMAGE="${A4PS_SANDBOX_IMAGE:-a4ps-sandbox:latest}"
LOG_DIR="${A4PS_SANDBOX_LOG_DIR:-/var/log/a4ps}"
# The Debian mirror this host's apt already uses (deb822 or one-line sources), unless overridden.
apt_mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f" && return
    done
    awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null
}
MIRROR="${A4PS_DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}"
SUITE="${A4PS_DEBIAN_SUITE:-bookworm}"
DOCKER_WAIT_S="${A4PS_DOCKER_WAIT_S:-30}"

say() { printf 'setup_host: %s\n' "$*"; }

# --- cgroup v1 parents for a user -------------------------------------------------------------
# `setup_host.sh --cgroups-for USER`: on a cgroup v1 host, hand USER a parent cgroup of its own in each
# controller the sandbox limits a run with, so that a product run by USER (not root) gets a cgroup per
# run. cgroup v2 needs none of this: `python3 a4ps.py run` asks systemd for a delegated scope. The
# directories last until the next boot; run it again then (or from a boot script).
if [ "${1:-}" = "--cgroups-for" ]; then
    user="${2:-}"
    case "$user" in
        "" | *[!0-9]*)  # a name: it must exist
            if [ -z "$user" ] || ! uid="$(id -u "$user" 2>/dev/null)" || ! gid="$(id -g "$user" 2>/dev/null)"; then
                say "--cgroups-for needs the name of an existing user, or a uid"
                exit 2
            fi ;;
        *) uid="$user"; gid="$(id -g "$user" 2>/dev/null || echo "$user")" ;;
    esac
    if [ "$(id -u)" != "0" ]; then
        say "only root can hand cgroups to $user; run: sudo $0 --cgroups-for $user"
        exit 2
    fi
    root="${A4PS_CGROUP_ROOT:-/sys/fs/cgroup}"
    if [ -e "$root/cgroup.controllers" ]; then
        say "$root is cgroup v2: nothing to hand over; \`python3 a4ps.py run\` starts the product in a delegated systemd scope"
        exit 0
    fi
    for controller in memory pids cpuacct; do
        if [ ! -e "$root/$controller/cgroup.procs" ]; then
            say "no cgroup v1 $controller hierarchy at $root/$controller; nothing changed"
            exit 2
        fi
    done
    for controller in memory pids cpuacct; do
        dir="$root/$controller/a4ps-sandbox-$uid"
        mkdir -p "$dir" && chown "$uid:$gid" "$dir" || { say "could not make $dir"; exit 2; }
    done
    say "user $user (uid $uid) has cgroup v1 parents a4ps-sandbox-$uid in memory, pids and cpuacct until the next boot"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    say "not root; nothing changed. To enable every sandbox backend, as root run:"
    say "  apt-get install -y docker.io runsc bubblewrap debootstrap"
    say "  $0            # registers runsc, starts dockerd, builds $IMAGE offline"
    say "or, with internet: docker build -t $IMAGE -f sandbox/Dockerfile.sandbox sandbox/"
    say "bubblewrap alone is enough for the local 'bwrap' backend."
    exit 0
fi

mkdir -p "$LOG_DIR"

# --- packages -------------------------------------------------------------------------------
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v runsc >/dev/null 2>&1 || missing="$missing runsc"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    say "installing:$missing (log: $LOG_DIR/apt.log)"
    # timeout keeps a stuck mirror from hanging the test command.
    if ! timeout 600 sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing" \
            >"$LOG_DIR/apt.log" 2>&1; then
        say "apt-get failed (see $LOG_DIR/apt.log); continuing with what is installed"
    fi
fi

# --- register runsc -------------------------------------------------------------------------
# --network=none inside runsc as well: even a misconfigured container gets no netstack.
if command -v runsc >/dev/null 2>&1; then
    mkdir -p /etc/docker
    daemon_json=/etc/docker/daemon.json
    [ -s "$daemon_json" ] || echo '{}' >"$daemon_json"
    if ! grep -q '"runsc"' "$daemon_json"; then
        if command -v jq >/dev/null 2>&1; then
            tmp="$daemon_json.a4ps.tmp"
            if jq '.runtimes.runsc = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}' \
                    "$daemon_json" >"$tmp"; then
                mv "$tmp" "$daemon_json"
                say "registered runsc in $daemon_json"
                RESTART_DOCKERD=1
            else
                rm -f "$tmp"
                say "could not edit $daemon_json (invalid JSON?); runsc not registered"
            fi
        elif [ "$(tr -d ' \n\t' <"$daemon_json")" = "{}" ]; then
            printf '%s\n' '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}}}' \
                >"$daemon_json"
            say "registered runsc in $daemon_json"
            RESTART_DOCKERD=1
        else
            say "jq missing and $daemon_json not empty; add the runsc runtime by hand"
        fi
    fi
fi

# --- dockerd --------------------------------------------------------------------------------
docker_up() { timeout 5 docker info >/dev/null 2>&1; }

wait_docker() {
    i=0
    while [ "$i" -lt "$DOCKER_WAIT_S" ]; do
        docker_up && return 0
        sleep 1
        i=$((i + 1))
    done
    return 1
}

start_dockerd() {
    # $@: extra flags. setsid + nohup so dockerd outlives this script and the test session.
    say "starting dockerd $* (log: $LOG_DIR/dockerd.log)"
    setsid nohup dockerd "$@" >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    echo $! >"$LOG_DIR/dockerd.pid"
}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "docker is not installed; docker backends will be skipped"
    exit 0
fi

if docker_up && [ "${RESTART_DOCKERD:-0}" = "1" ]; then
    # A running daemon only picks up a new runtime on reload (SIGHUP reloads runtimes).
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if [ -n "$pid" ]; then
        kill -HUP "$pid" 2>/dev/null && say "sent SIGHUP to dockerd $pid to load the runsc runtime"
        sleep 1
    fi
fi

if ! docker_up; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        timeout 30 systemctl start docker >/dev/null 2>&1 || true
    fi
fi
if ! docker_up; then
    start_dockerd
    if ! wait_docker; then
        # Some hosts (containers, minimal VMs) cannot program iptables or create docker0. The
        # sandbox only ever runs --network=none, so a daemon without bridge networking is enough.
        pid="$(cat "$LOG_DIR/dockerd.pid" 2>/dev/null || true)"
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
        sleep 2
        rm -f /var/run/docker.pid
        start_dockerd --iptables=false --ip6tables=false --bridge=none
        if ! wait_docker; then
            say "dockerd did not answer within ${DOCKER_WAIT_S}s; last log lines:"
            tail -n 15 "$LOG_DIR/dockerd.log" 2>/dev/null | sed 's/^/  dockerd: /'
            say "docker backends will be skipped"
            exit 0
        fi
    fi
fi
say "dockerd is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"

# --- image ----------------------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE present"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    say "debootstrap missing; cannot build $IMAGE offline. With internet:"
    say "  docker build -t $IMAGE -f sandbox/Dockerfile.sandbox sandbox/"
    exit 0
fi

# Offline build: a minbase Debian with python3 from the apt mirror, imported as one layer.
rootfs="$(mktemp -d /var/tmp/a4ps-rootfs.XXXXXX)"
say "building $IMAGE with debootstrap $SUITE from $MIRROR (log: $LOG_DIR/debootstrap.log)"
if ! timeout 900 debootstrap --variant=minbase --include=python3 "$SUITE" "$rootfs" "$MIRROR" \
        >"$LOG_DIR/debootstrap.log" 2>&1; then
    say "debootstrap failed (see $LOG_DIR/debootstrap.log); docker backends will be skipped"
    rm -rf "$rootfs"
    exit 0
fi
# Trim what a sandbox never needs: package caches, docs, the package manager's state.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
mkdir -p "$rootfs/work"
chmod 1777 "$rootfs/work"
if tar -C "$rootfs" -c . | docker import \
        --change 'USER 65534:65534' \
        --change 'WORKDIR /work' \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'CMD ["python3"]' \
        - "$IMAGE" >/dev/null; then
    say "built $IMAGE"
else
    say "docker import failed; docker backends will be skipped"
fi
rm -rf "$rootfs"
exit 0
