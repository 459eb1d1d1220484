# shellcheck shell=bash
# The Docker engine for the check. A running daemon is used as it is and left as found. Otherwise
# Debian's dockerd is started here with its default options, and everything starting it changes on
# the host is recorded first and undone afterwards: it turns on IP forwarding, adds iptables chains
# and rules (creating the filter and nat tables when they were not there), and creates the docker0
# bridge (compose adds br-<id> bridges, removed again by `down`). /var/lib/docker (images, build cache)
# is kept: it is the cache that makes a second run fast.

DOCKERD_PID=
DOCKERD_LOG=
declare -A SYSCTL_BEFORE=()
IPT_TABLES_BEFORE=
IP6T_TABLES_BEFORE=
LINKS_BEFORE=
RUN_DOCKER_EXISTED=

SYSCTLS=(net/ipv4/ip_forward net/ipv6/conf/all/forwarding net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables)

docker_answers() { docker info >/dev/null 2>&1; }

# The volumes there before the check, so that cleanup removes only the dangling ones it made.
VOLUMES_BEFORE=
VOLUMES_RECORDED=no
record_volumes() {
  VOLUMES_BEFORE=$(docker volume ls -q | sort)
  VOLUMES_RECORDED=yes
}
remove_new_dangling_volumes() {
  [[ $VOLUMES_RECORDED == yes ]] || return 0
  comm -13 <(echo "$VOLUMES_BEFORE") <(docker volume ls -q --filter dangling=true | sort) | xargs -r docker volume rm >/dev/null
}

ensure_dockerd() {
  if docker_answers; then
    log "using the Docker engine already running ($(docker version -f '{{.Server.Version}}'))"
    return
  fi
  command -v dockerd >/dev/null || die "no Docker engine: apt-get install docker.io (.ci/run does)"
  [[ $(id -u) == 0 ]] || die "starting dockerd needs root"
  if [[ -e /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    die "a dockerd (pid $(cat /var/run/docker.pid)) runs but does not answer; not touching it"
  fi
  # A pid file left by a dockerd that was killed would stop this one from starting.
  [[ -e /var/run/docker.pid ]] && rm -f /var/run/docker.pid
  record_host_state
  DOCKERD_LOG=$(mktemp /tmp/ocean-check-dockerd.XXXXXX.log)
  dockerd >"$DOCKERD_LOG" 2>&1 &
  DOCKERD_PID=$!
  if ! wait_until 60 docker_answers; then
    tail -n 20 "$DOCKERD_LOG" >&2
    die "dockerd (pid $DOCKERD_PID) did not answer within 60 s (log above)"
  fi
  log "started dockerd $(docker version -f '{{.Server.Version}}') (pid $DOCKERD_PID); it is stopped and its host changes undone at exit"
}

# What dockerd changes, as it was before: sysctls, the iptables tables that exist, links, /run/docker.
record_host_state() {
  local s
  for s in "${SYSCTLS[@]}"; do
    [[ -e /proc/sys/$s ]] && SYSCTL_BEFORE[$s]=$(<"/proc/sys/$s")
  done
  if command -v iptables-save >/dev/null; then
    IPT_TABLES_BEFORE=$(iptables-save | sed -n 's/^\*//p' | sort)
    iptables-save >"$WORK/iptables.before"
  fi
  if command -v ip6tables-save >/dev/null; then
    IP6T_TABLES_BEFORE=$(ip6tables-save | sed -n 's/^\*//p' | sort)
    ip6tables-save >"$WORK/ip6tables.before"
  fi
  LINKS_BEFORE=$(link_names)
  [[ -e /run/docker ]] && RUN_DOCKER_EXISTED=yes || RUN_DOCKER_EXISTED=no
}

link_names() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }

# Stops the dockerd this script started, by its pid, and undoes what starting it changed.
stop_dockerd_and_restore() {
  [[ -n $DOCKERD_PID ]] || return 0
  local pid=$DOCKERD_PID containerd_pid=
  DOCKERD_PID=
  [[ -r /var/run/docker/containerd/containerd.pid ]] && containerd_pid=$(</var/run/docker/containerd/containerd.pid)
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "dockerd (pid $pid) did not stop in 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  # dockerd stops the containerd it started; a killed dockerd may leave it behind.
  if [[ -n $containerd_pid ]] && kill -0 "$containerd_pid" 2>/dev/null; then kill -TERM "$containerd_pid" 2>/dev/null || true; fi
  restore_sysctls
  restore_iptables iptables "$IPT_TABLES_BEFORE" "$WORK/iptables.before" ip
  restore_iptables ip6tables "$IP6T_TABLES_BEFORE" "$WORK/ip6tables.before" ip6
  remove_new_bridges
  remove_run_docker
  rm -f "$DOCKERD_LOG"
  log "dockerd stopped; IP forwarding, iptables and bridges are as they were"
}

restore_sysctls() {
  local s
  for s in "${!SYSCTL_BEFORE[@]}"; do
    if [[ $(<"/proc/sys/$s") != "${SYSCTL_BEFORE[$s]}" ]]; then echo "${SYSCTL_BEFORE[$s]}" >"/proc/sys/$s"; fi
  done
}

# restore_iptables TOOL TABLES_BEFORE SAVED_FILE NFT_FAMILY: every table that existed gets its saved
# rules back (which drops docker's chains from it); a table that dockerd created is deleted (with nft,
# on the nf_tables backend) or, where it cannot be deleted, emptied to accepting policies, which
# filters nothing, as before.
restore_iptables() {
  local tool=$1 before=$2 saved=$3 family=$4 table
  command -v "$tool-save" >/dev/null || return 0
  for table in $("$tool-save" | sed -n 's/^\*//p'); do
    if grep -qx "$table" <<<"$before"; then
      sed -n "/^\*$table\$/,/^COMMIT\$/p" "$saved" | "$tool-restore" -T "$table" ||
        log "could not restore the $table table of $tool"
    elif "$tool" --version | grep -q nf_tables && command -v nft >/dev/null; then
      nft delete table "$family" "$table" || log "could not delete the $family $table table"
    else
      "$tool" -t "$table" -F && "$tool" -t "$table" -X
      local chain
      for chain in $("$tool" -t "$table" -S | awk '$1 == "-P" { print $2 }'); do "$tool" -t "$table" -P "$chain" ACCEPT; done
      log "left an empty $tool $table table with ACCEPT policies (deleting it needs nft: apt-get install nftables)"
    fi
  done
}

# docker0 and the br-<id> bridges of compose networks that were not there before.
remove_new_bridges() {
  local link
  for link in $(comm -13 <(echo "$LINKS_BEFORE") <(link_names)); do
    if [[ $link == docker0 || $link =~ ^br-[0-9a-f]{12}$ || $link =~ ^veth ]]; then ip link delete "$link" 2>/dev/null || true; fi
  done
}

# dockerd's runtime directory (sockets, netns files), when this run created it.
remove_run_docker() {
  [[ $RUN_DOCKER_EXISTED == no && -d /run/docker ]] || return 0
  local mnt
  for mnt in $(findmnt -rn -o TARGET | grep '^/run/docker/' | sort -r); do umount -l "$mnt" || true; done
  rm -rf --one-file-system /run/docker
}
