#!/usr/bin/env bash
# Stop the test cluster that start.sh started and remove what it made:
# its processes (by the pids it recorded), the pods' containers, mounts under
# its directories, its network namespace (veth, bridge, routes go with it), its
# cgroups and its runtime state ($K8S_RUN, etcd and kubelet data).
#
#   scripts/k8s/stop.sh           keep containerd's image store ($K8S_DATA/containerd): the next start does not re-import
#   scripts/k8s/stop.sh --purge   remove $K8S_DATA entirely
#
# Built binaries in $K8S_CACHE are never touched.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/versions.sh"
RUN=$K8S_RUN DATA=$K8S_DATA
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1
log() { echo "[k8s-stop $(date -u +%H:%M:%S)] $*" >&2; }

stop_pid() {  # stop_pid NAME: SIGTERM the recorded pid, SIGKILL after 15 s
  local f=$RUN/$1.pid pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    log "$1 stopped"
  fi
  rm -f "$f"
}

for c in agent-sandbox-controller kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver; do stop_pid "$c"; done

# Containers: kill and remove every task and container of our containerd, so
# their shims exit, before containerd itself stops.
SOCK=$RUN/containerd/containerd.sock
if [ -S "$SOCK" ] && [ -f "$RUN/containerd.pid" ] && kill -0 "$(cat "$RUN/containerd.pid")" 2>/dev/null; then
  CTR="ctr --address $SOCK -n k8s.io"
  for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks rm -f "$t" >/dev/null 2>&1; done
  for c in $($CTR containers ls -q 2>/dev/null); do $CTR containers rm "$c" >/dev/null 2>&1; done
fi
stop_pid containerd
stop_pid etcd

# Mounts left under our directories (pod volumes, overlay roots, netns files), deepest first.
for base in "$DATA" "$RUN"; do
  awk -v b="$base" '$2 == b || index($2, b "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
done

if [ -e "/run/netns/$K8S_NETNS" ]; then
  ip netns del "$K8S_NETNS" && log "network namespace $K8S_NETNS removed"
fi
ip link del osk8s-host 2>/dev/null || true

for h in /sys/fs/cgroup/*/openshell-k8s; do
  [ -d "$h" ] || continue
  find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

rm -rf "$RUN" "$DATA/etcd" "$DATA/kubelet" "$DATA/pod-logs" "$DATA/cni-ipam"
if [ "$PURGE" = 1 ]; then rm -rf "$DATA"; log "purged $DATA"; fi
log "stopped"
