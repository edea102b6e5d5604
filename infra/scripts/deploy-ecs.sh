#!/usr/bin/env bash
# Builds the four images from source, pushes them to Amazon ECR, and deploys
# infra/ecs/loadtest.yaml with CloudFormation (API behind an ALB, 2 writers, the Slack notifier,
# loadgen task definition). Needs the AWS CLI v2 with credentials, and Docker.
#
# Usage: infra/scripts/deploy-ecs.sh [--dry-run] [--stack NAME] [--region REGION] [--tag TAG]
#                                    [--params FILE]
#   --dry-run  print every command instead of running it (nothing is built, pushed or deployed)
#   --stack    CloudFormation stack name (default loadtest)
#   --region   AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, or the CLI's configured one)
#   --tag      image tag (default: the git commit, with -dirty when the work tree has changes)
#   --params   the template's other parameters, KEY=VALUE lines (default
#              infra/ecs/parameters.env; infra/ecs/parameters.example.env shows them)
set -euo pipefail
cd "$(dirname "$0")/../.."

dry=0
stack=loadtest
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
tag=
params=infra/ecs/parameters.env
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --stack) stack=$2; shift ;;
    --region) region=$2; shift ;;
    --tag) tag=$2; shift ;;
    --params) params=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "deploy-ecs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Prints a command (quoted so it can be pasted), then runs it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry" = 0 ]; then "$@"; fi
}

# query VAR PLACEHOLDER COMMAND...: sets VAR to the command's output; with --dry-run prints the
# command and sets VAR to PLACEHOLDER.
query() {
  local var=$1 placeholder=$2 out; shift 2
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry" = 1 ]; then out=$placeholder; else out=$("$@"); fi
  printf -v "$var" '%s' "$out"
}

if [ ! -f "$params" ]; then
  if [ "$dry" = 1 ]; then
    echo "# $params is missing; showing infra/ecs/parameters.example.env's values" >&2
    params=infra/ecs/parameters.example.env
  else
    echo "deploy-ecs.sh: $params is missing: cp infra/ecs/parameters.example.env $params, then fill it in" >&2
    exit 2
  fi
fi
if [ -z "$tag" ]; then
  tag=$(git rev-parse --short=12 HEAD)
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then tag="$tag-dirty"; fi
fi
if [ -z "$region" ]; then
  query region REGION aws configure get region
fi
account=
query account ACCOUNT_ID aws sts get-caller-identity --query Account --output text
registry="$account.dkr.ecr.$region.amazonaws.com"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
revision=$(git rev-parse HEAD)

# 1. ECR repositories (created when missing) and the registry login.
for repo in loadtest-api loadtest-writer loadgen loadtest-notifier; do
  if [ "$dry" = 1 ]; then
    echo "+ aws ecr describe-repositories --region $region --repository-names $repo >/dev/null 2>&1 || aws ecr create-repository --region $region --repository-name $repo --image-scanning-configuration scanOnPush=true"
  elif ! aws ecr describe-repositories --region "$region" --repository-names "$repo" >/dev/null 2>&1; then
    run aws ecr create-repository --region "$region" --repository-name "$repo" \
      --image-scanning-configuration scanOnPush=true
  fi
done
echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
if [ "$dry" = 0 ]; then
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
fi

# 2. Build (the official Rust image compiles the workspace; targets api, writer, loadgen,
#    notifier) and push.
declare -A image
for target in api writer loadgen notifier; do
  case "$target" in
    api) repo=loadtest-api ;;
    writer) repo=loadtest-writer ;;
    loadgen) repo=loadgen ;;
    notifier) repo=loadtest-notifier ;;
  esac
  image[$target]="$registry/$repo:$tag"
  run docker build -f infra/docker/Dockerfile --target "$target" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" -t "${image[$target]}" .
  run docker push "${image[$target]}"
done

# 3. Deploy the stack with the new images.
overrides=("ApiImage=${image[api]}" "WriterImage=${image[writer]}" "LoadgenImage=${image[loadgen]}"
  "NotifierImage=${image[notifier]}")
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    ''|'#'*) continue ;;
    *=*) overrides+=("$line") ;;
    *) echo "deploy-ecs.sh: $params: not KEY=VALUE: $line" >&2; exit 2 ;;
  esac
done <"$params"
run aws cloudformation deploy --region "$region" --stack-name "$stack" \
  --template-file infra/ecs/loadtest.yaml --capabilities CAPABILITY_IAM \
  --no-fail-on-empty-changeset --parameter-overrides "${overrides[@]}"
run aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
  --query 'Stacks[0].Outputs' --output table
