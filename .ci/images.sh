#!/usr/bin/env bash
# Builds the images the stack test runs, on a machine that can pull none (no registry):
#   1. debian:bookworm-slim, the base every Dockerfile starts from: a minimal root file system
#      from Debian's packages (debootstrap, mirror taken from this machine's apt sources), then
#      `docker import`. Built once; kept while an image of that name exists.
#   2. The stand-ins of docker-compose.ci.yml for RabbitMQ and InfluxDB, from Debian's packages
#      (infra/docker/ci/; `apt-get` inside `docker build` reaches Debian's mirror here). Docker's
#      layer cache makes later runs take seconds.
#   3. The Locust image loadtest-locust:TAG (infra/docker/Dockerfile's `locust` target: Locust
#      $LOCUST_PIN from PyPI and the plugin clients/locust), which needs no binary of ours. pip
#      inside `docker build` reaches PyPI here; the CA certificates this machine adds to Debian's
#      store (/usr/local/share/ca-certificates, e.g. a TLS-intercepting proxy's) go to pip as the
#      build argument EXTRA_CA_CERTS, never into the image. Docker's layer cache makes later runs
#      take seconds (loadtest-ci/locust-venv and loadtest-ci/locust keep it when TAG goes).
#   4. Our images, from the binaries the test stage already built (infra/docker/Dockerfile's
#      *-prebuilt targets; debug info stripped into target/docker/ to keep the context small),
#      tagged loadtest-api:TAG, loadtest-writer:TAG, loadgen:TAG, loadtest-notifier:TAG.
# Usage: bash .ci/images.sh [TAG]   (TAG default: ci; PROFILE=debug|release picks the binaries)
# IMAGES_STEP picks a part (default all): `base` (1, 2 and 3, which need no build of ours),
# `stage` (strip the binaries into target/docker), `ours` (4 from what `stage` left), `all`.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-ci}
PROFILE=${PROFILE:-debug}
LOADTEST_CI_DIR=${LOADTEST_CI_DIR:-/tmp/loadtest-ci}
BINARIES=(loadtest-api loadtest-writer loadgen loadtest-notifier loadtest-healthcheck)
mkdir -p "$LOADTEST_CI_DIR"
# apt_install (and LOADTEST_CI_DIR's default) from the services script.
# shellcheck source=.ci/services.sh
source .ci/services.sh

log() { echo "[images] $*"; }

# Without buildx the docker CLI refuses BuildKit; the Dockerfiles work with the legacy builder.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

# The Debian mirror this machine's apt uses (deb822 .sources files or a one-line sources.list).
debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
    if [ -n "$uri" ] && ! [[ "$uri" == *security* ]]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  return 1
}

build_base_image() {
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    log "debian:bookworm-slim exists; kept"
    return
  fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror rootfs
  mirror=$(debian_mirror) || { log "ERROR: no Debian mirror in /etc/apt/sources*"; return 1; }
  rootfs=$(mktemp -d "$LOADTEST_CI_DIR/rootfs.XXXXXX")
  log "debootstrap bookworm from $mirror (about a minute)"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$LOADTEST_CI_DIR/debootstrap.log" 2>&1; then
    log "ERROR: debootstrap failed; see $LOADTEST_CI_DIR/debootstrap.log"
    rm -rf "$rootfs"
    return 1
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
  tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'LABEL org.opencontainers.image.description="debootstrap --variant=minbase bookworm, built by .ci/images.sh"' \
    - debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
  log "debian:bookworm-slim imported"
}

# The CA certificates added to this machine's store, PEM, for pip in the Locust image's build.
extra_ca_certs() {
  find /usr/local/share/ca-certificates -name '*.crt' -type f -exec cat {} + 2>/dev/null || true
}

# The Locust stages' build arguments, given to every build of infra/docker/Dockerfile: the legacy
# builder builds every stage above the target, and the same arguments keep those cached.
DOCKERFILE_ARGS=(--build-arg "LOCUST_VERSION=$LOCUST_PIN" --build-arg "EXTRA_CA_CERTS=$(extra_ca_certs)")

build() { # build TAG DOCKERFILE CONTEXT [docker build options...]
  local tag=$1 file=$2 context=$3; shift 3
  log "docker build $tag"
  if [ "$file" = infra/docker/Dockerfile ]; then set -- "${DOCKERFILE_ARGS[@]}" "$@"; fi
  if ! docker build -q -f "$file" -t "$tag" "$@" "$context" >"$LOADTEST_CI_DIR/build.log" 2>&1; then
    cat "$LOADTEST_CI_DIR/build.log"
    log "ERROR: building $tag failed"
    return 1
  fi
}

# Only one run on this machine builds at a time (several checkouts share the engine).
if [ "${IMAGES_STEP:-all}" != stage ]; then
  exec 9>"$LOADTEST_CI_DIR/images.lock"
  flock 9
fi

STEP=${IMAGES_STEP:-all}

if [ "$STEP" = base ] || [ "$STEP" = all ]; then
  build_base_image
  build loadtest-ci/rabbitmq:3.10 infra/docker/ci/rabbitmq.Dockerfile infra/docker/ci
  build loadtest-ci/victoriametrics:1.79 infra/docker/ci/victoriametrics.Dockerfile infra/docker/ci
  # The venv stage (Locust from PyPI, the slow part) and the image also get tags of their own,
  # so that .ci/run removing its TAG leaves their layers cached for the next run.
  build loadtest-ci/locust-venv:latest infra/docker/Dockerfile . --target locust-venv
  build "loadtest-locust:$TAG" infra/docker/Dockerfile . --target locust
  docker tag "loadtest-locust:$TAG" loadtest-ci/locust:latest
fi

if [ "$STEP" = stage ] || [ "$STEP" = all ]; then
  for bin in "${BINARIES[@]}"; do
    if [ ! -x "target/$PROFILE/$bin" ]; then
      log "ERROR: target/$PROFILE/$bin is missing; build it first:"
      log "  cargo build --locked -p loadtest-api -p loadtest-writer -p loadgen -p loadtest-notifier -p loadtest-healthcheck --bins"
      exit 1
    fi
  done
  command -v objcopy >/dev/null || apt_install binutils
  mkdir -p target/docker
  for bin in "${BINARIES[@]}"; do
    objcopy --strip-debug "target/$PROFILE/$bin" "target/docker/$bin"
  done
fi

if [ "$STEP" = ours ] || [ "$STEP" = all ]; then
  build "loadtest-api:$TAG" infra/docker/Dockerfile . --target api-prebuilt --build-arg BINARIES=target/docker
  build "loadtest-writer:$TAG" infra/docker/Dockerfile . --target writer-prebuilt --build-arg BINARIES=target/docker
  build "loadgen:$TAG" infra/docker/Dockerfile . --target loadgen-prebuilt --build-arg BINARIES=target/docker
  build "loadtest-notifier:$TAG" infra/docker/Dockerfile . --target notifier-prebuilt --build-arg BINARIES=target/docker
  log "images ready: loadtest-api:$TAG loadtest-writer:$TAG loadgen:$TAG loadtest-notifier:$TAG"
fi
