# shellcheck shell=bash
# Checks of the Ocean Core image on its own: one container with a named volume on /data, as compose
# runs it, and one whose process serves nothing, for the HEALTHCHECK's failing side.

APP_CONTAINER=
DEAD_CONTAINER=
APP_VOLUME=
APP_URL=
APP_ADMIN_TOKEN=

run_image_checks() {
  APP_CONTAINER="ocean-check-app-$RUN_ID"
  DEAD_CONTAINER="ocean-check-dead-$RUN_ID"
  APP_VOLUME="ocean-check-data-$RUN_ID"
  APP_ADMIN_TOKEN=$(random_hex 24)
  start_dead_service
  start_app
  check "/health answers 200 ($(curl -s --max-time 5 "$APP_URL/health" | jq -c '{status}'))" health_answers "$APP_URL"
  check "/redoc's script is served by the image itself (no CDN)" redoc_script_served
  check "the service runs as a non-root user ($(docker exec "$APP_CONTAINER" id -un), uid $(container_pid1_uid))" runs_as_non_root
  check "/data is owned and writable by the service user, and holds the stores" data_dir_is_the_users
  check "the image's HEALTHCHECK turns healthy (its own 15 s interval)" wait_health "$APP_CONTAINER" healthy 60
  check "the HEALTHCHECK fails against a dead service (a container whose process serves nothing)" \
    wait_health "$DEAD_CONTAINER" unhealthy 40
  check "docker stop shuts the service down cleanly: exit code 0, well within the grace period" stops_cleanly
  check "/data survives a restart (a metadata value written before docker stop is read after docker start)" \
    data_survives_restart
  check "the image has no dev dependencies, build tools or TypeScript sources" no_dev_dependencies
  check "the image holds no secrets (no .env, token or npm credentials; canary of the build context absent)" no_secrets
  docker rm -f -v "$APP_CONTAINER" "$DEAD_CONTAINER" >/dev/null 2>&1 || true
  docker volume rm "$APP_VOLUME" >/dev/null 2>&1 || true
}

start_app() {
  docker run -d --name "$APP_CONTAINER" --label "$RUN_LABEL=$RUN_ID" \
    -e ADMIN_TOKEN="$APP_ADMIN_TOKEN" -v "$APP_VOLUME:/data" -p 127.0.0.1::8030 "$APP_IMAGE" >/dev/null ||
    die "docker run $APP_IMAGE failed"
  APP_URL="http://$(docker port "$APP_CONTAINER" 8030/tcp | head -n 1)"
  if ! wait_until 30 health_answers "$APP_URL"; then
    docker logs --tail 30 "$APP_CONTAINER" 2>&1
    die "the container does not answer on $APP_URL/health within 30 s (logs above)"
  fi
}

# The image's own HEALTHCHECK command, run by the engine at a short interval against a process that
# does not serve HTTP (as when the server has died but the container has not). The start period is 1 s:
# 0 would mean the image's 30 s.
start_dead_service() {
  docker run -d --name "$DEAD_CONTAINER" --label "$RUN_LABEL=$RUN_ID" \
    --health-interval 2s --health-timeout 3s --health-retries 2 --health-start-period 1s \
    "$APP_IMAGE" node -e 'setInterval(() => {}, 60_000)' >/dev/null || die "docker run of the dead-service container failed"
}

health_answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1/health") == 200 ]]; }

redoc_script_served() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$APP_URL/redoc/redoc.standalone.js") == 200 ]]; }

container_pid1_uid() { docker exec "$APP_CONTAINER" awk '/^Uid:/ { print $2 }' /proc/1/status; }

runs_as_non_root() {
  local user uid
  user=$(docker image inspect -f '{{.Config.User}}' "$APP_IMAGE")
  uid=$(container_pid1_uid)
  [[ -n $user && $user != root && $user != 0 && -n $uid && $uid != 0 ]]
}

data_dir_is_the_users() {
  # shellcheck disable=SC2016 # expanded inside the container
  docker exec "$APP_CONTAINER" sh -c '
    [ "$(stat -c %U /data)" = "$(id -un)" ] && [ "$(stat -c %U /data/ocean.db)" = "$(id -un)" ] &&
    [ -f /data/analytics.duckdb ] && touch /data/.write-check && rm /data/.write-check'
}

wait_health() {
  local container=$1 want=$2 timeout=$3
  wait_until "$timeout" health_is "$container" "$want" || {
    log "$container health: $(docker inspect -f '{{json .State.Health}}' "$container" | head -c 600)"
    return 1
  }
}
health_is() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$1") == "$2" ]]; }

admin_api() {
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 10 -X "$method" -H "authorization: Bearer $APP_ADMIN_TOKEN" "$@" "$APP_URL$path"
}

stops_cleanly() {
  admin_api POST /api/ocean/metadata/container-check -H 'content-type: application/json' \
    -d "{\"value\":\"$RUN_ID\"}" >/dev/null || return 1
  local started=$SECONDS code
  docker stop "$APP_CONTAINER" >/dev/null || return 1
  code=$(docker inspect -f '{{.State.ExitCode}}' "$APP_CONTAINER")
  log "docker stop took $((SECONDS - started))s, exit code $code"
  # docker stop's grace period is 10 s, then SIGKILL (exit 137).
  [[ $code == 0 ]] && ((SECONDS - started < 10))
}

data_survives_restart() {
  docker start "$APP_CONTAINER" >/dev/null || return 1
  APP_URL="http://$(docker port "$APP_CONTAINER" 8030/tcp | head -n 1)" # a new host port after a start
  wait_until 30 health_answers "$APP_URL" || return 1
  [[ $(admin_api GET /api/ocean/metadata/container-check | jq -r .value) == "$RUN_ID" ]]
}

no_dev_dependencies() {
  # shellcheck disable=SC2016 # expanded inside the container
  docker run --rm --entrypoint sh "$APP_IMAGE" -c '
    node -e "
      const fs = require(\"fs\");
      // redoc is there trimmed to the one bundle /redoc serves (Dockerfile.ocean copies it).
      const dev = Object.keys(require(\"/app/package.json\").devDependencies ?? {}).filter((name) => name !== \"redoc\");
      if (fs.readdirSync(\"/app/node_modules/redoc/bundles\").some((f) => !f.startsWith(\"redoc.standalone.js\"))) { console.error(\"more of redoc than its bundle\"); process.exit(1); }
      const found = dev.filter((name) => fs.existsSync(\"/app/node_modules/\" + name));
      if (found.length) { console.error(\"dev dependencies in the image: \" + found.join(\", \")); process.exit(1); }"
    for tool in g++ gcc make python3 tsc; do
      if command -v "$tool" >/dev/null; then echo "build tool in the image: $tool" >&2; exit 1; fi
    done
    if [ -e /app/src ] || [ -e /app/tsconfig.json ]; then echo "TypeScript sources in the image" >&2; exit 1; fi'
}

no_secrets() {
  local ok=0 found
  # Files that hold secrets in a checkout or on a running system.
  found=$(docker run --rm --entrypoint sh "$APP_IMAGE" -c \
    'find / -xdev \( -name ".env" -o -name ".env.*" -o -name "admin.token" -o -name "*.pem" -path "/app/*" \) -print 2>/dev/null
     grep -rlsE "_authToken|_auth *=|_password *=" /usr/local/etc/npmrc /root/.npmrc /home/node/.npmrc /app/.npmrc 2>/dev/null' || true)
  if [[ -n $found ]]; then log "secret-like files in the image: $found"; ok=1; fi
  # Nothing secret in the image's configuration (environment, labels, history).
  if docker image inspect -f '{{json .Config.Env}} {{json .Config.Labels}}' "$APP_IMAGE" | grep -qiE 'TOKEN|SECRET|PASSWORD'; then
    log "secret-like names in the image's environment or labels"; ok=1
  fi
  if docker history --no-trunc --format '{{.CreatedBy}}' "$APP_IMAGE" | grep -qE 'ADMIN_TOKEN=|NANOGRIDATA_SECRET_[0-9A-F]+=|PASSWORD='; then
    log "a secret is set in the image's history"; ok=1
  fi
  # The canary of the build context (in .env and data/admin.token) must be nowhere in the layers.
  if docker save "$APP_IMAGE" | grep -aqF "$CANARY"; then log "the build context's .env or data/ reached the image"; ok=1; fi
  return "$ok"
}
