# shellcheck shell=bash
# Builds the two images of the check with the classic builder (BuildKit's frontend would be pulled from
# a registry): Ocean Core from Dockerfile.ocean with NODE_IMAGE set to the local base, and the Redis
# stand-in. Tags are fixed, so the layers of the last build are the cache of the next one; the image a
# tag pointed to before is removed once the tag has moved.

APP_IMAGE=ocean-core-check:app
APP_BUILD_STAGE=ocean-core-check:app-build-stage
REDIS_IMAGE=ocean-core-check:redis
PG_IMAGE=ocean-core-check:postgres
CANARY=
REDIS_BUILD_PID=

build_images() {
  local started=$SECONDS
  stage_context "$WORK/context"
  # The Redis and PostgreSQL stand-ins are mostly apt-get (network); they build beside the app image
  # (mostly compiling), one after the other.
  {
    build_image "$REDIS_IMAGE" "$WORK/redis-build.log" -f "$HERE/redis/Dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" "$HERE/redis" &&
      build_image "$PG_IMAGE" "$WORK/redis-build.log.pg" -f "$HERE/postgres/Dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" "$HERE/postgres" ||
      { cat "$WORK/redis-build.log.pg" >>"$WORK/redis-build.log" 2>/dev/null; exit 1; }
  } &
  REDIS_BUILD_PID=$!
  if ! build_image "$APP_IMAGE" "$WORK/app-build.log" -f "$WORK/context/Dockerfile.ocean" \
    --build-arg NODE_IMAGE="$BASE_IMAGE" "$WORK/context"; then
    wait "$REDIS_BUILD_PID" || true
    tail -n 40 "$WORK/app-build.log"
    die "docker build -f Dockerfile.ocean on the local base failed (last lines above)"
  fi
  log "Ocean Core image built in $((SECONDS - started))s"
  # The build stage is not part of the image; a tag keeps its layers (npm ci, the native build) cached.
  build_image "$APP_BUILD_STAGE" "$WORK/app-build-stage.log" --target build -f "$WORK/context/Dockerfile.ocean" \
    --build-arg NODE_IMAGE="$BASE_IMAGE" "$WORK/context" || log "could not tag the build stage (cache only)"
  local redis_status=0
  wait "$REDIS_BUILD_PID" || redis_status=$?
  REDIS_BUILD_PID=
  if ((redis_status != 0)); then
    tail -n 40 "$WORK/redis-build.log"
    die "docker build of test/container/redis/Dockerfile or test/container/postgres/Dockerfile failed (last lines above)"
  fi
  pass "the image builds from Dockerfile.ocean on the local base ($((SECONDS - started))s)"
  log "image size: $APP_IMAGE $(image_mb "$APP_IMAGE") MB (base $(image_mb "$BASE_IMAGE") MB, Redis stand-in $(image_mb "$REDIS_IMAGE") MB, PostgreSQL stand-in $(image_mb "$PG_IMAGE") MB)"
}

# build_image TAG LOG docker-build-args...: builds, then drops the image the tag pointed to before.
build_image() {
  local tag=$1 logfile=$2 before after
  shift 2
  before=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  DOCKER_BUILDKIT=0 docker build --label "$RUN_LABEL=$RUN_ID" -t "$tag" "$@" >"$logfile" 2>&1 || return 1
  after=$(docker image inspect -f '{{.Id}}' "$tag")
  if [[ -n $before && $before != "$after" ]]; then docker image rm "$before" >/dev/null 2>&1 || true; fi
}

# The build context as a clean clone has it (tracked and new, not ignored, files of the work tree; no
# node_modules, dist or data), plus canaries where secrets would be in a developer's tree: .env and
# data/admin.token. The canary's value must not be found anywhere in the image.
stage_context() {
  local ctx=$1
  mkdir -p "$ctx/data"
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
    (cd "$ROOT" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$ctx"
  CANARY="canary$(random_hex 16)"
  printf 'ADMIN_TOKEN=%s\nREDIS_PASSWORD=%s\n' "$CANARY" "$CANARY" >"$ctx/.env"
  printf '%s\n' "$CANARY" >"$ctx/data/admin.token"
}
