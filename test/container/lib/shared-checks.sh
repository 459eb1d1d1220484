# shellcheck shell=bash
# Checks of docker-compose-shared.yml on top of docker-compose-ultralight.yml (the shared mode: two
# instances on one PostgreSQL), in the check's project once the ultralight checks are done, with the
# images built here (compose.shared.local.yml; the PostgreSQL stand-in of test/container/postgres).
# Prometheus and Grafana are not started (their images cannot be had here).

shared_compose() {
  (cd "$PROJECT_DIR" && OCEAN_CHECK_IMAGE=$APP_IMAGE OCEAN_CHECK_REDIS_IMAGE=$REDIS_IMAGE OCEAN_CHECK_PG_IMAGE=$PG_IMAGE \
    timeout 180 "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose-ultralight.yml -f docker-compose-shared.yml \
    -f compose.local.yml -f compose.shared.local.yml "$@")
}

run_shared_checks() {
  # The ultralight stack's containers and volumes go first: the shared one starts from nothing.
  compose --profile demo down -v --remove-orphans >/dev/null 2>&1 || true
  check "docker-compose-shared.yml on top of it is valid" shared_compose --profile demo config -q
  shared_compose up -d --no-build redis postgres ocean-core-8030 ocean-core-8031 >"$WORK/shared-up.log" 2>&1 || {
    cat "$WORK/shared-up.log"
    shared_compose logs --no-color --tail 30 >&2 || true
    die "compose up of the shared stack (redis, postgres, ocean-core-8030, ocean-core-8031) failed (output above)"
  }
  SHARED_A="http://$(docker port "$(shared_compose ps -q ocean-core-8030)" 8030/tcp | head -n 1)"
  SHARED_B="http://$(docker port "$(shared_compose ps -q ocean-core-8031)" 8031/tcp | head -n 1)"
  check "both instances answer /health on PostgreSQL with their stream consumers connected" wait_until 90 both_on_postgres
  check "postgres and both instances are healthy by their healthchecks" shared_stack_healthy
  check "PostgreSQL is published nowhere" postgres_not_published
  check "a session made through one instance validates through the other; revoked there, the first refuses it" session_across
  shared_compose --profile demo up -d --no-build simulator >>"$WORK/shared-up.log" 2>&1 || fail "compose up of the simulator (shared stack) failed"
  check "the simulator's frames reach analytics through both instances" wait_until 60 both_have_data
  check "both instances answer the same readings, and every frame the simulator sent is stored" same_readings_every_frame
  shared_compose --profile demo down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
}

both_on_postgres() {
  local url health
  for url in "$SHARED_A" "$SHARED_B"; do
    health=$(curl -s --max-time 5 "$url/health") || return 1
    [[ $(jq -r '.engine' <<<"$health") == postgresql && $(jq -r '.checks.postgresql' <<<"$health") == ok &&
      $(jq -r '.ingest.consumer_connected' <<<"$health") == true ]] || return 1
  done
}

shared_stack_healthy() {
  wait_health "$(shared_compose ps -q postgres)" healthy 60 &&
    wait_health "$(shared_compose ps -q ocean-core-8030)" healthy 60 &&
    wait_health "$(shared_compose ps -q ocean-core-8031)" healthy 60
}

postgres_not_published() {
  [[ -z $(docker port "$(shared_compose ps -q postgres)") ]]
}

# api URL PATH [curl args...]: as the admin.
api() {
  local url=$1 path=$2
  shift 2
  curl -sS --max-time 10 -H "authorization: Bearer $STACK_ADMIN_TOKEN" "$@" "$url$path"
}

validate_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H "authorization: Bearer $2" "$1/api/ocean/sessions/validate"
}

session_across() {
  local user token
  user=$(api "$SHARED_A" /api/ocean/users -H 'content-type: application/json' -d '{"username":"check","email":"check@example.com"}' | jq -r .id)
  token=$(api "$SHARED_A" /api/ocean/sessions/create -H 'content-type: application/json' -d "{\"user_id\":\"$user\",\"username\":\"check\"}" | jq -r .token)
  [[ $(validate_status "$SHARED_B" "$token") == 200 ]] || { log "B did not validate A's session"; return 1; }
  curl -s -o /dev/null --max-time 10 -X POST -H "authorization: Bearer $token" "$SHARED_B/api/ocean/sessions/revoke"
  [[ $(validate_status "$SHARED_A" "$token") == 401 ]] || { log "A still validates the session B revoked"; return 1; }
}

both_have_data() {
  local url
  for url in "$SHARED_A" "$SHARED_B"; do
    (($(api "$url" /api/ocean/analytics/sensors | jq -r '.count // 0') > 0)) || return 1
  done
}

# Once the simulator is stopped (it prints how many frames it sent) and ingest has settled: the same
# export through both instances, and one fingerprint per frame sent (the fingerprint decides, in the
# readings' own transaction, whether a frame is stored: so each frame is stored once, none is lost).
same_readings_every_frame() {
  shared_compose stop simulator >/dev/null 2>&1 || return 1
  local sent stored a b prev
  sent=$(docker logs "$(shared_compose ps -q simulator)" 2>/dev/null | grep '^{' | tail -n 1 | jq -r '.sent // empty')
  a=$(api "$SHARED_A" '/api/ocean/analytics/export?format=csv' | tail -n +2 | sort)
  for _ in $(seq 1 15); do
    sleep 2
    prev=$a
    a=$(api "$SHARED_A" '/api/ocean/analytics/export?format=csv' | tail -n +2 | sort)
    [[ $a == "$prev" ]] && break
  done
  b=$(api "$SHARED_B" '/api/ocean/analytics/export?format=csv' | tail -n +2 | sort)
  # shellcheck disable=SC2016
  stored=$(shared_compose exec -T postgres sh -c 'PGPASSWORD=$POSTGRES_PASSWORD psql -h /run/postgresql -U ocean -d ocean -tAc "SELECT count(*) FROM replay_fingerprints"' | tr -d '\r')
  log "shared stack: the simulator sent ${sent:-?} frames; $stored stored, $(wc -l <<<"$a") readings"
  [[ -n $a && $a == "$b" && -n $sent && $stored == "$sent" ]]
}
