#!/usr/bin/env bash
# Makes a Docker engine available for the docker runtime and its tests, doing only what is not
# done yet: installs docker.io (as root, with apt-get) when there is no dockerd, starts dockerd
# when no engine answers, and builds the local node images (deploy/build-images.sh).
# bootstrap.sh runs it when CI=true; run it by hand on a Debian/Ubuntu machine to get the same.
# Usage: deploy/docker-setup.sh [--no-images]
set -euo pipefail
cd "$(dirname "$0")/.."

images=1
[ "${1:-}" = "--no-images" ] && images=0

say() { printf 'docker-setup: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
. deploy/apt.sh

if docker info >/dev/null 2>&1; then
  say "a Docker engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
else
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && is_root; then
      say "installing docker.io with apt-get"
      apt_get update
      # policy-rc.d and no systemd: the package does not start the daemon; we do, below.
      apt_get install -y docker.io
    else
      say "no Docker here: install it (Debian/Ubuntu: sudo apt-get install docker.io; macOS: Docker Desktop)"
      exit 1
    fi
  fi
  if ! is_root; then
    say "no Docker engine answers and starting dockerd needs root: start Docker (sudo systemctl start docker)"
    exit 1
  fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] &&
     systemctl start docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    say "started the docker service"
  else
    log=/var/log/dockerd.log
    touch "$log" 2>/dev/null || log="${TMPDIR:-/tmp}/dockerd.log"
    say "starting dockerd (log: $log)"
    # Its own session: it outlives this script and the test run that started it.
    # dockerd outlives this script: it must not inherit our open descriptors beyond 0-2 (a lock
    # held by whoever ran us, e.g. `flock LOCK bash docker-setup.sh`, would stay held by dockerd).
    (
      for fd in /proc/self/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
      done
      exec setsid nohup dockerd >>"$log" 2>&1 < /dev/null
    ) &
    for _ in $(seq 1 120); do  # up to 60 s
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
      say "dockerd did not come up within 60 s; the end of $log:"
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    say "dockerd is up ($(docker version -f '{{.Server.Version}}'))"
  fi
fi

if [ $images = 1 ]; then
  deploy/build-images.sh
fi
