#!/usr/bin/env bash
# Prepares everything the service and its tests need, and does nothing that is already done:
# OS packages (redis-server, memcached, haproxy, sasl2-bin), a virtual environment in .venv, the Python dependencies.
# Usage: deploy/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

say() { printf 'bootstrap: %s\n' "$*" >&2; }
. deploy/apt.sh
did=0  # set once something is installed: the last line then says how long set-up took

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      python=$candidate; break
    fi
  done
fi
if [ -z "$python" ]; then
  say "Python 3.11 or newer is needed (Debian/Ubuntu: apt-get install python3 python3-venv; macOS: brew install python@3.12)"
  exit 1
fi

# OS packages: the node binaries, and HAProxy (the L4 proxy of endpoints that cannot be
# floating addresses). Installed when missing and we may (root with apt, or Homebrew).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# saslpasswd2 writes the user database of memcached nodes with SASL (Debian puts it in /usr/sbin).
command -v saslpasswd2 >/dev/null 2>&1 || [ -x /usr/sbin/saslpasswd2 ] || missing+=(sasl2-bin)
# A C compiler and OpenSSL's headers build keyroute (engine/proxy/keyroute.c), the proxy in front
# of serverless caches, on first use.
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/include/openssl/ssl.h ] || [ "$(uname -s)" = Darwin ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing ${missing[*]} with apt-get"; did=1
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}" redis-tools
    # Debian starts the packaged services where systemd runs; our nodes do not need them. Only
    # the ones just installed: a service the user already ran is theirs.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now "${missing[@]}" >/dev/null 2>&1 || true
    fi
  elif command -v brew >/dev/null 2>&1; then
    brew_names=()
    for name in "${missing[@]}"; do
      case $name in redis-server) brew_names+=(redis) ;; sasl2-bin) brew_names+=(cyrus-sasl) ;; gcc) ;; *) brew_names+=("$name") ;; esac
    done
    say "installing ${brew_names[*]} with Homebrew"; did=1
    brew install "${brew_names[@]}"
  else
    say "missing ${missing[*]}: install them first (Debian/Ubuntu: sudo apt-get install redis-server memcached haproxy sasl2-bin gcc libssl-dev; Fedora: sudo dnf install redis memcached haproxy cyrus-sasl; macOS: brew install redis memcached haproxy cyrus-sasl)"
    exit 1
  fi
fi

# PostgreSQL, the database of the cache examples (examples/db.py starts its own, in a temporary
# directory): installed when missing and we may; otherwise those examples use SQLite and say so.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing postgresql with apt-get (the examples' database)"; did=1
    apt_get update
    apt_get install -y --no-install-recommends postgresql
    # The examples start their own server; not the packaged one.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
  elif command -v brew >/dev/null 2>&1; then
    say "installing postgresql with Homebrew"; did=1
    brew install postgresql@16
  else
    say "postgresql not found (Debian/Ubuntu: sudo apt-get install postgresql): the cache examples will use SQLite"
  fi
fi

# pip's output, one line per package as it is downloaded or found, then the install step.
pip_progress() {
  local line n=0 w
  while IFS= read -r line; do
    read -ra w <<< "$line"
    case $line in
      Collecting\ *) n=$((n + 1)); say "  ($n) ${w[1]}" ;;
      Installing\ collected\ packages:*)
        say "installing $(($(tr -cd , <<< "$line" | wc -c) + 1)) packages" ;;
      Successfully\ installed*) say "installed" ;;
    esac
  done
}

# Chromium, for the browser tests (tests/browser drive Debian's chromium through Playwright;
# Playwright's own browser download is not used). Test set-up only.
if [ $dev = 1 ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing chromium with apt-get (for the browser tests)"
    apt_get update
    apt_get install -y --no-install-recommends chromium fonts-dejavu-core
  else
    say "chromium not found (Debian/Ubuntu: sudo apt-get install chromium): the browser tests will be skipped"
  fi
fi

# Python: a virtual environment, refreshed when pyproject.toml changes.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"; did=1
  if ! "$python" -m venv .venv 2>/dev/null; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      apt_get install -y python3-venv
      "$python" -m venv .venv
    else
      say "python venv module missing (Debian/Ubuntu: apt-get install python3-venv)"; exit 1
    fi
  fi
fi
# (No `[ ... ] && ...` in assignments: under set -e a false test there ends the script.)
if [ $dev = 1 ]; then
  extras="[dev]"; stamp=.venv/.installed-dev
else
  extras=""; stamp=.venv/.installed
fi
want=$(sha256sum < pyproject.toml | cut -d' ' -f1)
current() { [ -f "$1" ] && [ "$(cat "$1")" = "$want" ]; }
# The test tools' install holds everything the service needs too.
if current "$stamp" || { [ $dev = 0 ] && current .venv/.installed-dev; }; then
  :
else
  say "installing Python dependencies${extras:+ (with test tools)} into .venv, one line per package"; did=1
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install --progress-bar off -e ".${extras}" | pip_progress
  echo "$want" > "$stamp"
fi

# CI runs the docker-runtime tests too: a Docker engine and the local node images (no registry).
if [ "${CI:-}" = "true" ]; then
  deploy/docker-setup.sh
fi

if [ $did = 1 ]; then
  say "set-up took $((SECONDS / 60)) min $((SECONDS % 60)) s"
fi
