#!/usr/bin/env bash
# The container check (`npm run test:container`; .ci/run runs it after `npm test`).
#
# Builds the Ocean Core image from Dockerfile.ocean on a locally made base image (no image registry is
# reachable on these machines: see lib/base-image.sh), runs it, and checks what a deployment relies on:
#   the image:  /health answers; the service runs as a non-root user; the HEALTHCHECK turns healthy and
#               fails against a dead service; /data is the service user's and survives a restart;
#               `docker stop` ends it cleanly with exit code 0; no dev dependencies, build tools or
#               secrets are in it; its size is printed.
#   compose:    docker-compose-ultralight.yml (redis + ocean-core-8030, images substituted by
#               compose.local.yml) comes up healthy with the stream consumer connected; Redis wants its
#               password; placeholders are refused; the simulator's frames reach analytics; data
#               survives down/up. Then docker-compose-shared.yml on top (the shared mode, with a
#               PostgreSQL stand-in built here): both instances on PostgreSQL, healthy, with their
#               consumers connected; PostgreSQL published nowhere; a session made through one
#               validates through the other and its revocation holds on both; the simulator's frames
#               reach analytics, the same through both, each once.
# One PASS or FAIL line per check; exit status 1 when any failed. Everything it starts is removed at
# exit, whatever the exit path: containers, volumes, networks, temporary files, and the dockerd it
# started (with the host changes that starting it made). Images are kept as the next run's cache.
#
# Needs root, Debian's docker.io, docker-compose (or a docker compose v2 plugin) and debootstrap, curl,
# jq, and the npm registry and Debian's archive (for the base image and the builds' npm ci / apt-get).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CHECK_START=$SECONDS
RUN_ID="$(date +%s)-$$"
RUN_LABEL=org.ocean-core.check.run
WORK=$(mktemp -d /tmp/ocean-container-check.XXXXXX)
ROOTFS_DIR=
COMPOSE_CHECKS_PID=

# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/dockerd.sh
source "$HERE/lib/dockerd.sh"
# shellcheck source=lib/base-image.sh
source "$HERE/lib/base-image.sh"
# shellcheck source=lib/build.sh
source "$HERE/lib/build.sh"
# shellcheck source=lib/image-checks.sh
source "$HERE/lib/image-checks.sh"
# shellcheck source=lib/compose-checks.sh
source "$HERE/lib/compose-checks.sh"
# shellcheck source=lib/shared-checks.sh
source "$HERE/lib/shared-checks.sh"

# Runs on every exit: what the check started, in reverse order of starting it.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  log "── cleanup"
  # A build still running in the background (the check failed or was interrupted meanwhile).
  [[ -n $REDIS_BUILD_PID ]] && kill "$REDIS_BUILD_PID" 2>/dev/null
  [[ -n $COMPOSE_CHECKS_PID ]] && kill "$COMPOSE_CHECKS_PID" 2>/dev/null && wait "$COMPOSE_CHECKS_PID" 2>/dev/null
  if docker_answers; then
    stop_compose_project
    # Anything of this run that a failed step left behind (containers, then volumes and networks).
    [[ -n $PROJECT ]] && docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f -v >/dev/null
    docker ps -aq --filter "label=$RUN_LABEL=$RUN_ID" | xargs -r docker rm -f -v >/dev/null
    [[ -n $APP_VOLUME ]] && docker volume rm "$APP_VOLUME" >/dev/null 2>&1
    [[ -n $PROJECT ]] && docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null
    [[ -n $PROJECT ]] && docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker network rm >/dev/null
    # Anonymous volumes (the images declare VOLUME /data) of containers removed along the way.
    remove_new_dangling_volumes
  fi
  stop_dockerd_and_restore
  [[ -n $ROOTFS_DIR ]] && remove_rootfs "$ROOTFS_DIR"
  rm -rf --one-file-system "$WORK"
  print_timings
  ((status != 0 || FAILURES == 0)) || status=1
  if ((status != 0 && FAILURES == 0)); then
    printf 'FAIL  the check stopped on an unexpected error (exit status %d; see the output above)\n' "$status"
    FAILURES=1
  fi
  # The closing line in the form CI reads: N passed, N failed.
  printf 'container-check: %d passed, %d failed\n' "$PASSES" "$FAILURES"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

main() {
  for tool in docker curl jq openssl git npm node; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  phase "docker engine" ensure_dockerd
  record_volumes
  phase "base image" ensure_base_image
  phase "image build" build_images
  phase "image and compose checks" run_checks_side_by_side
  ((FAILURES == 0)) || exit 1
}

# The image checks and the compose checks use containers of their own and spend most of their time
# waiting (for healthchecks, for the simulator), so they run side by side; the compose checks' lines
# are printed, and counted, once both are done.
run_checks_side_by_side() {
  prepare_compose_project
  local out="$WORK/compose-checks.out" compose_status=0 started=$SECONDS image_took
  (
    run_compose_checks
    log "the compose checks took $((SECONDS - started))s"
  ) >"$out" 2>&1 &
  COMPOSE_CHECKS_PID=$!
  run_image_checks
  image_took=$((SECONDS - started))
  wait "$COMPOSE_CHECKS_PID" || compose_status=$?
  COMPOSE_CHECKS_PID=
  log "the image checks took ${image_took}s"
  log "── compose stack (ran beside the image checks)"
  cat "$out"
  PASSES=$((PASSES + $(grep -c '^PASS ' "$out" || true)))
  FAILURES=$((FAILURES + $(grep -c '^FAIL ' "$out" || true)))
  # A compose check that could not go on (die) has printed its FAIL line and ended the subshell.
  ((compose_status == 0)) || log "the compose checks stopped early (exit status $compose_status)"
}

main "$@"
