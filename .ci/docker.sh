#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
#   bash .ci/docker.sh        # exit 0 once `docker info` answers, non-zero otherwise
#
# - already answering: nothing to do;
# - dockerd missing: `apt-get install docker.io` (waits for an install that is
#   already running, e.g. one started by the machine's setup);
# - then starts dockerd in the background, logging to $DOCKERD_LOG, and waits
#   up to $DOCKER_WAIT_S seconds (default 60) for `docker info` to answer.
set -u

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
DOCKER_WAIT_S="${DOCKER_WAIT_S:-60}"

say() { echo "docker.sh: $*" >&2; }

engine_ok() { docker info >/dev/null 2>&1; }

# Is a process with this exact name running? (/proc, so that procps is not needed)
running() {
    local comm
    for comm in /proc/[0-9]*/comm; do
        [ "$(cat "$comm" 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}

if command -v docker >/dev/null 2>&1 && engine_ok; then
    say "Docker engine already answering"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        say "not root and no sudo: cannot install or start dockerd"; exit 1
    fi
fi

# An install may already be under way (dpkg lock held): wait for it, bounded.
wait_for_dpkg() {
    local i
    for i in $(seq 1 300); do
        if ! running apt-get && ! running dpkg; then
            return 0
        fi
        [ "$i" = 1 ] && say "waiting for a running apt-get/dpkg to finish"
        sleep 2
    done
    say "apt-get/dpkg still running after 600 s"
    return 1
}

have_docker() { command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; }

if ! have_docker; then
    wait_for_dpkg || exit 1
    if ! have_docker; then
        say "dockerd not found; installing docker.io"
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
            && $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq docker.io >/dev/null \
            || { say "apt-get install docker.io failed"; exit 1; }
    fi
fi
command -v dockerd >/dev/null 2>&1 || { say "dockerd still not found after install"; exit 1; }

# Start dockerd unless one is already running (it may just be slow to answer).
if ! running dockerd; then
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: keep dockerd out of this script's process group and session.
    $SUDO setsid dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 1 "$DOCKER_WAIT_S"); do
    if engine_ok; then
        say "Docker engine answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    sleep 1
done

say "Docker engine did not answer within ${DOCKER_WAIT_S} s; last lines of $DOCKERD_LOG:"
tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
exit 1
