#!/usr/bin/env bash
# Functions that install (Debian packages; PyPI packages into a virtual environment under
# $LOADTEST_CI_DIR) and start the services the tests use, each idempotent: a service already
# answering is left alone. Installing Debian packages needs root (apt-get).
# Services: RabbitMQ 127.0.0.1:5672, InfluxDB 1.x 127.0.0.1:8086, VictoriaMetrics 127.0.0.1:8428.

LOADTEST_CI_DIR=${LOADTEST_CI_DIR:-/tmp/loadtest-ci}
mkdir -p "$LOADTEST_CI_DIR"
_apt_updated=0

log() { echo "[services] $*"; }

apt_install() {
  if [ "$_apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "ERROR: $what did not come up; see the log files in $LOADTEST_CI_DIR"; return 1
    fi
    sleep 1
  done
  log "$what is up"
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null; then apt_install rabbitmq-server; fi
  if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
    # -detached returns before the node registers with epmd, and `rabbitmqctl await_startup`
    # fails at once on a node it cannot see yet: wait for it to answer a ping first.
    wait_for 120 "RabbitMQ node" rabbitmq-diagnostics -q ping
    timeout 120 rabbitmqctl await_startup >/dev/null
  fi
  wait_for 60 "RabbitMQ (127.0.0.1:5672)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672'
}

ensure_influxdb() {
  if ! command -v influxd >/dev/null; then apt_install influxdb influxdb-client; fi
  if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8086/ping)" != 204 ]; then
    log "starting InfluxDB 1.x"
    nohup influxd -config /etc/influxdb/influxdb.conf >"$LOADTEST_CI_DIR/influxd.log" 2>&1 &
  fi
  wait_for 60 "InfluxDB (127.0.0.1:8086)" curl -sf http://127.0.0.1:8086/ping
}

ensure_victoriametrics() {
  if ! command -v victoria-metrics >/dev/null; then apt_install victoria-metrics; fi
  if ! curl -sf http://127.0.0.1:8428/health >/dev/null 2>&1; then
    log "starting VictoriaMetrics"
    mkdir -p "$LOADTEST_CI_DIR/vm-data"
    nohup victoria-metrics -storageDataPath "$LOADTEST_CI_DIR/vm-data" -httpListenAddr 127.0.0.1:8428 \
      >"$LOADTEST_CI_DIR/victoria-metrics.log" 2>&1 &
  fi
  wait_for 60 "VictoriaMetrics (127.0.0.1:8428)" curl -sf http://127.0.0.1:8428/health
}

# The tests' Python packages (Locust, the editable plugin, schemathesis) live in their own virtual
# environment, never in the system Python; the tests find its tools through LOADTEST_PYTHON_BIN
# (exported here), else in $LOADTEST_CI_DIR/test-venv/bin, else on PATH.
TEST_VENV=$LOADTEST_CI_DIR/test-venv
export LOADTEST_PYTHON_BIN=$TEST_VENV/bin

ensure_test_venv() {
  if [ ! -x "$TEST_VENV/bin/python" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv -h >/dev/null 2>&1 || apt_install python3-venv
    log "python3 -m venv $TEST_VENV"
    python3 -m venv "$TEST_VENV"
  fi
}

# venv_pip_pin PACKAGE VERSION: installs PACKAGE==VERSION into the test venv unless it is there.
venv_pip_pin() {
  if [ "$("$TEST_VENV/bin/python" -m pip show "$1" 2>/dev/null | awk '/^Version:/{print $2}')" != "$2" ]; then
    log "pip install $1==$2 (into $TEST_VENV)"
    "$TEST_VENV/bin/python" -m pip install -q --disable-pip-version-check "$1==$2"
  fi
}

# The Locust release the tests run and the Locust image installs (.ci/images.sh passes it to
# infra/docker/Dockerfile); keep it in sync with LOCUST_PIN in tests/e2e/src/locust.rs, which the
# tests check against the installed Locust and the image.
LOCUST_PIN=2.32.4

ensure_locust() {
  # Real Locust for the plugin's end-to-end tests (tests/e2e/tests/locust.rs), pinned. The plugin
  # itself is installed editable from clients/locust.
  if [ -d clients/locust ]; then
    ensure_test_venv
    venv_pip_pin locust "$LOCUST_PIN"
    # Always: an editable install points at one checkout, and CI runs in a fresh clone.
    log "pip install -e ./clients/locust (into $TEST_VENV)"
    "$TEST_VENV/bin/python" -m pip install -q --disable-pip-version-check -e ./clients/locust
  fi
}

ensure_chromium() {
  # Headless Chromium renders loadgen's --html report in its end-to-end test.
  if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    apt_install chromium
  fi
}

ensure_schemathesis() {
  # schemathesis, pinned, for the API contract test (tests/e2e/tests/api_contract.rs).
  ensure_test_venv
  venv_pip_pin schemathesis 4.32.5
}

ensure_docker() {
  # The stack test's Docker engine is started with the machine; docker-compose and debootstrap
  # come from Debian's packages.
  command -v docker-compose >/dev/null || apt_install docker-compose
  command -v debootstrap >/dev/null || apt_install debootstrap
  if ! docker info >/dev/null 2>&1; then
    log "ERROR: the Docker engine does not answer (docker info); the stack test needs it"
    return 1
  fi
}
