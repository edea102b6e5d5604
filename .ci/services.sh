#!/usr/bin/env bash
# Functions that install (Debian packages, PyPI) and start the services the tests use, each
# idempotent: a service already answering is left alone.
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

ensure_locust() {
  # Real Locust for the plugin's end-to-end test (tests/e2e/tests/locust.rs), pinned; keep the pin
  # in sync with LOCUST_PIN there. The plugin itself is installed editable from clients/locust.
  local pin=2.32.4
  if [ -d clients/locust ]; then
    if [ "$(python3 -c 'import locust; print(locust.__version__)' 2>/dev/null)" != "$pin" ]; then
      log "pip install locust==$pin"
      PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q "locust==$pin"
    fi
    # Always: an editable install points at one checkout, and CI runs in a fresh clone.
    log "pip install -e ./clients/locust"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e ./clients/locust
    command -v locust >/dev/null || log "WARNING: locust is not on PATH; the tests use python3 -m locust"
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
  local pin=4.32.5
  if [ "$(python3 -m pip show schemathesis 2>/dev/null | awk '/^Version:/{print $2}')" != "$pin" ]; then
    log "pip install schemathesis==$pin"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q "schemathesis==$pin"
  fi
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
