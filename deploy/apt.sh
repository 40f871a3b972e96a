# apt-get for the set-up scripts (sourced; they define `say`): a held package lock is waited for,
# a bounded time and with a message naming its holder, instead of apt's raw lock error; each
# package is one line as it is fetched and set up; a failure shows apt's last lines.
#   APT_LOCK_WAIT   seconds to wait for the lock (default 300)
#   APT_LOCK_FILES  the lock files looked at (default: dpkg's and apt's own)

APT_LOCK_WAIT=${APT_LOCK_WAIT:-300}
APT_LOCK_FILES=${APT_LOCK_FILES:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}

# "process 1234 (apt-get)" for the first process holding one of the lock files, from /proc/locks
# (apt and dpkg take POSIX locks); nothing when none is held or this is not Linux.
apt_lock_holder() {
  [ -r /proc/locks ] || return 0
  local file inode pid
  for file in $APT_LOCK_FILES; do
    [ -e "$file" ] || continue
    inode=$(stat -c %i "$file" 2>/dev/null) || continue
    # "1: POSIX ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"; "1: -> ..." lines are waiters.
    pid=$(awk -v inode="$inode" '$2 != "->" { n = split($6, f, ":"); if (f[n] == inode) { print $5; exit } }' /proc/locks)
    if [ -n "$pid" ] && [ "$pid" != "-1" ]; then
      printf 'process %s (%s)' "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"
      return 0
    fi
  done
}

# apt's output, one line per package: "Get:3 <source> <suite> <arch> <name> <arch> <version> [<size>]"
# as it is fetched (package lists have fewer words), "Setting up <name> (<version>) ..." as it is set up.
_apt_progress() {
  local line waited=0 w
  while IFS= read -r line; do
    read -ra w <<< "$line"
    case $line in
      Get:*) [ ${#w[@]} -lt 9 ] || say "  fetching ${w[4]} ${w[7]#[} ${w[8]%]}" ;;
      "Setting up "*) say "  set up ${w[2]}" ;;
      *"Waiting for cache lock"*|*"Could not get lock"*)
        [ $waited = 1 ] || say "  waiting for the package lock: ${line#*: }"
        waited=1 ;;
    esac
  done
}

apt_get() {
  local holder log
  holder=$(apt_lock_holder)
  if [ -n "$holder" ] && [ "$holder" != "${_apt_told:-}" ]; then  # once per holder, not per apt-get call
    say "the package lock is held by $holder: waiting up to ${APT_LOCK_WAIT} s for it to finish"
    _apt_told=$holder
  fi
  log=$(mktemp)
  if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" -q "$@" 2>&1 |
       tee "$log" | _apt_progress; then
    rm -f "$log"
    return 0
  fi
  say "apt-get $* failed; its last lines:"
  tail -n 12 "$log" | sed 's/^/    /' >&2
  rm -f "$log"
  holder=$(apt_lock_holder)
  if [ -n "$holder" ]; then
    say "the package lock is still held by $holder after ${APT_LOCK_WAIT} s: let it finish and run this again" \
        "(or wait longer: APT_LOCK_WAIT=seconds)"
  fi
  return 1
}
