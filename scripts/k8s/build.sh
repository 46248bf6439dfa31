#!/usr/bin/env bash
# Build the single-node test cluster's binaries from their Go modules and cache
# them outside the repository, keyed by version (see versions.sh):
#
#   $K8S_CACHE/v1.34.4/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
#   $K8S_CACHE/helm-v4.3.2/bin/helm
#   $K8S_CACHE/agent-sandbox-v1.0.1/{bin/agent-sandbox-controller,crds/*.yaml}
#
# A part whose outputs are all present is not rebuilt, so a second run is a
# no-op. Builds run at nice 19 with GOMAXPROCS=2 (the machine is shared).
#
#   scripts/k8s/build.sh [helm|agent-sandbox|kubernetes ...]   (default: all three)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/versions.sh"

export GOFLAGS="-trimpath -mod=mod -buildvcs=false" GOMAXPROCS=${GOMAXPROCS:-2} CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local
NICE="nice -n 19"
log() { echo "[k8s-build $(date -u +%H:%M:%S)] $*" >&2; }

mod_dir() {  # mod_dir MODULE@VERSION -> the module's source directory in the module cache
  go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["Dir"]) if "Dir" in d else sys.exit(d.get("Error","no Dir"))'
}

build_helm() {
  [ -x "$HELM_BIN/helm" ] && { log "helm $HELM_VERSION cached"; return; }
  local t0=$SECONDS
  log "building helm $HELM_VERSION"
  mkdir -p "$HELM_BIN.tmp"
  GOBIN="$HELM_BIN.tmp" $NICE go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  rm -rf "$HELM_BIN"; mv "$HELM_BIN.tmp" "$HELM_BIN"
  log "helm built in $((SECONDS - t0))s"
}

build_agent_sandbox() {
  local out=$AGENT_SANDBOX_DIR
  [ -x "$out/bin/agent-sandbox-controller" ] && [ -f "$out/crds/agents.x-k8s.io_sandboxes.yaml" ] && { log "agent-sandbox $AGENT_SANDBOX_VERSION cached"; return; }
  local t0=$SECONDS src
  log "building agent-sandbox $AGENT_SANDBOX_VERSION"
  src=$(mod_dir "sigs.k8s.io/agent-sandbox@$AGENT_SANDBOX_VERSION")
  rm -rf "$out.tmp"; mkdir -p "$out.tmp/bin" "$out.tmp/crds"
  GOBIN="$out.tmp/bin" $NICE go install -ldflags "-s -w" \
    "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller@$AGENT_SANDBOX_VERSION"
  cp "$src"/k8s/crds/*.yaml "$out.tmp/crds/"
  # The controller's RBAC and deployment manifests, for reference when running it in-cluster.
  [ -d "$src/k8s" ] && cp -r "$src/k8s" "$out.tmp/manifests"
  chmod -R u+w "$out.tmp"
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "agent-sandbox built in $((SECONDS - t0))s"
}

K8S_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"

build_kubernetes() {
  local missing=""
  for c in $K8S_CMDS; do [ -x "$K8S_BIN/$c" ] || missing="$missing $c"; done
  [ -z "$missing" ] && { log "kubernetes $K8S_VERSION cached"; return; }
  local t0=$SECONDS src work="$K8S_CACHE/build/kubernetes-$K8S_VERSION"
  log "building kubernetes $K8S_VERSION:$missing"
  src=$(mod_dir "k8s.io/kubernetes@$K8S_VERSION")
  if [ ! -f "$work/.prepared" ]; then
    rm -rf "$work"; mkdir -p "$(dirname "$work")"
    cp -r "$src" "$work"; chmod -R u+w "$work"
    # The module zip leaves out staging/ (nested modules) and go.mod points at it:
    # use the published k8s.io/* modules of the same release instead.
    (cd "$work" && rm -rf vendor go.work go.work.sum &&
      for m in $(go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])'); do
        go mod edit -replace="$m=$m@$K8S_STAGING_VERSION"
      done && $NICE go mod download)
    touch "$work/.prepared"
  fi
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w"
  for p in $pkg $cpkg; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$K8S_BIN.tmp"
  local c
  for c in $missing; do
    local t1=$SECONDS
    (cd "$work" && $NICE go build -ldflags "$ld" -o "$K8S_BIN.tmp/$c" "./cmd/$c")
    log "$c built in $((SECONDS - t1))s"
  done
  mkdir -p "$K8S_BIN"
  for c in $missing; do mv "$K8S_BIN.tmp/$c" "$K8S_BIN/$c"; done
  rmdir "$K8S_BIN.tmp" 2>/dev/null || true
  log "kubernetes built in $((SECONDS - t0))s"
}

mkdir -p "$K8S_CACHE"
# One build at a time per cache (CI and a developer, or two sessions, may start one together).
exec 9>"$K8S_CACHE/.build.lock"
flock 9

parts=${*:-helm agent-sandbox kubernetes}
for p in $parts; do
  case $p in
    helm) build_helm ;;
    agent-sandbox) build_agent_sandbox ;;
    kubernetes) build_kubernetes ;;
    *) echo "unknown part: $p" >&2; exit 2 ;;
  esac
done
