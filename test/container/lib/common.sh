# shellcheck shell=bash
# Shared helpers of the container check: logging, PASS/FAIL accounting, phase timing, polling.
# Sourced by run.sh; expects `set -euo pipefail` there.

FAILURES=0
PASSES=0
PHASE_TIMES=()

log() { printf '[container-check] %s\n' "$*" >&2; }
pass() {
  printf 'PASS  %s\n' "$*"
  PASSES=$((PASSES + 1))
}
fail() {
  printf 'FAIL  %s\n' "$*"
  FAILURES=$((FAILURES + 1))
}

# check "what is true" command...: one PASS or FAIL line for the command's outcome. The command runs in
# an `if`, so `set -e` does not apply inside it: predicates return non-zero themselves.
check() {
  local what=$1 started=$SECONDS
  shift
  if "$@"; then pass "$what [$((SECONDS - started))s]"; else fail "$what [$((SECONDS - started))s]"; fi
}

# A failure after which the rest cannot run (no daemon, no image): say why and stop; the trap cleans up.
die() {
  printf 'FAIL  %s\n' "$*"
  FAILURES=$((FAILURES + 1))
  exit 1
}

# phase NAME function args...: runs one phase and records how long it took, for the summary.
phase() {
  local name=$1 start=$SECONDS
  shift
  log "── $name"
  "$@"
  PHASE_TIMES+=("$(printf '%-26s %4ds' "$name" $((SECONDS - start)))")
}

print_timings() {
  local t
  log "phase timings:"
  for t in "${PHASE_TIMES[@]}"; do log "  $t"; done
  log "  total                      $((SECONDS - CHECK_START))s"
}

# wait_until SECONDS command...: polls the command every half second until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# A TCP port free on the loopback interface now (the kernel picks it).
free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

random_hex() { openssl rand -hex "${1:-32}"; }
