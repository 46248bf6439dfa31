#!/usr/bin/env bash
# Start a single-node Kubernetes for tests, as root, from the binaries that
# build.sh cached (it is run first when they are missing).
#
#   scripts/k8s/start.sh          start (a running cluster is left as it is)
#   scripts/k8s/stop.sh [--purge] stop it (--purge also drops images and caches of the node)
#
# Everything runs inside the network namespace $K8S_NETNS: etcd and the
# control plane listen there (etcd on that namespace's loopback only), pods sit
# on the bridge osk8s0 in 10.199.200.0/21, services in 10.199.208.0/22, and
# kube-proxy's iptables rules never touch the host's. The host reaches the node
# over a veth pair (10.199.212.1 <-> 10.199.212.2) with routes for the pod and
# service ranges; the namespace has no default route, so pods reach nothing but
# 10.199.0.0/16 (test hosts on the host side included). Private state: $K8S_RUN (pids, logs, PKI, kubeconfigs, sockets)
# and $K8S_DATA (etcd, containerd, kubelet). Kubeconfig: $K8S_RUN/admin.kubeconfig.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/versions.sh"

log() { echo "[k8s-start $(date -u +%H:%M:%S)] $*" >&2; }
die() { echo "k8s-start: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# Debian's parts of the cluster (installed when missing; these machines reach Debian's mirror).
need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
command -v conntrack >/dev/null || [ -x /usr/sbin/conntrack ] || need_apt+=(conntrack)
command -v busybox >/dev/null || [ -x /bin/busybox ] || need_apt+=(busybox-static)  # the tests' small image
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt_opts=(-o DPkg::Lock::Timeout="${OPENSHELL_APT_WAIT:-300}")
  apt-get "${apt_opts[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# OPENSHELL_K8S_NO_BUILD=1: use what is cached, build nothing (fails below when something is missing).
[ "${OPENSHELL_K8S_NO_BUILD:-}" = 1 ] || "$HERE/build.sh" kubernetes agent-sandbox >&2

RUN=$K8S_RUN DATA=$K8S_DATA BIN=$K8S_BIN
NS="nsenter --net=/run/netns/$K8S_NETNS"
KUBECTL="$BIN/kubectl --kubeconfig $K8S_KUBECONFIG"

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# A cluster whose etcd is not running (never started, stopped, crashed, rebooted)
# starts from nothing: whatever an earlier run left (netns, mounts, etcd data,
# PKI) is removed first, so no stale state mixes with the new one. Images stay.
if ! running etcd; then "$HERE/stop.sh" >&2; fi

mkdir -p "$RUN"/{log,pki,cni/net.d,containerd} "$DATA"
chmod 0700 "$RUN" "$DATA"

# spawn NAME CMD...: run CMD in the cluster's network namespace, detached, logging to $RUN/log/NAME.log.
spawn() {
  local name=$1; shift
  if running "$name"; then log "$name already running"; return; fi
  setsid $NS "$@" >>"$RUN/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
  log "$name started (pid $!)"
}

# wait_for WHAT SECONDS CMD...: retry CMD every second until it succeeds.
wait_for() {
  local what=$1 limit=$2; shift 2
  local i
  for ((i = 0; i < limit; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "$what not ready after ${limit}s (logs: $RUN/log/)"
}

# --- network ---------------------------------------------------------------
if [ ! -e "/run/netns/$K8S_NETNS" ]; then
  log "network namespace $K8S_NETNS"
  ip netns add "$K8S_NETNS"
  ip link add osk8s-host type veth peer name osk8s-node
  ip link set osk8s-node netns "$K8S_NETNS"
  ip addr add "$K8S_HOST_IP/30" dev osk8s-host
  ip link set osk8s-host up
  ip netns exec "$K8S_NETNS" sh -ec "
    ip link set lo up
    ip addr add $K8S_NODE_IP/30 dev osk8s-node
    ip link set osk8s-node up
    # The bridge exists before the CNI plugin runs, so the node IP of the pod
    # network (the pods' gateway) is there from the start.
    ip link add osk8s0 type bridge
    ip addr add $K8S_POD_GW/${K8S_POD_CIDR#*/} dev osk8s0
    ip link set osk8s0 up
    # Test hosts (10.199.0.0/16 on the host side) are reached through the host; there
    # is no default route, so nothing outside 10.199.0.0/16 is reachable from pods.
    ip route add 10.199.0.0/16 via $K8S_HOST_IP
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
    sysctl -qw net.bridge.bridge-nf-call-ip6tables=1
  "
  ip route replace "$K8S_POD_CIDR" via "$K8S_NODE_IP" dev osk8s-host
  ip route replace "$K8S_SERVICE_CIDR" via "$K8S_NODE_IP" dev osk8s-host
fi

# --- PKI (one CA for the whole cluster; made once per $K8S_RUN) --------------
PKI=$RUN/pki
cert() {  # cert NAME CN [O] [SANS] [usage]: a leaf signed by the cluster CA
  local name=$1 cn=$2 o=${3:-} sans=${4:-} usage=${5:-clientAuth}
  [ -f "$PKI/$name.crt" ] && return
  local subj="/CN=$cn"; [ -n "$o" ] && subj="/O=$o$subj"
  local ext="$PKI/$name.ext"
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"; echo "extendedKeyUsage=$usage"
    [ -n "$sans" ] && echo "subjectAltName=$sans"; } > "$ext"
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  chmod 0600 "$PKI/$name.key"; rm -f "$PKI/$name.csr" "$ext"
}
if [ ! -f "$PKI/ca.crt" ]; then
  log "cluster PKI"
  (umask 077
   openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key"
   openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=openshell-k8s-ca" -days 365 -out "$PKI/ca.crt"
   openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
   openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null)
fi
API_SANS="IP:$K8S_NODE_IP,IP:127.0.0.1,IP:$K8S_API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver kube-apiserver "" "$API_SANS" serverAuth
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert admin admin system:masters
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert proxy system:kube-proxy
cert kubelet "system:node:$K8S_NODE_NAME" system:nodes
cert kubelet-serving "system:node:$K8S_NODE_NAME" system:nodes "IP:$K8S_NODE_IP,IP:127.0.0.1,DNS:$K8S_NODE_NAME" serverAuth

kubeconfig() {  # kubeconfig NAME CERT: a kubeconfig for user CERT at $K8S_API
  local f=$RUN/$1.kubeconfig
  [ -f "$f" ] && return
  (umask 077; cat > "$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: openshell-k8s
  cluster:
    server: $K8S_API
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$2.crt")
    client-key-data: $(base64 -w0 < "$PKI/$2.key")
contexts:
- name: openshell-k8s
  context: {cluster: openshell-k8s, user: $2}
current-context: openshell-k8s
EOF
  )
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig proxy proxy
kubeconfig kubelet kubelet

# --- etcd (plain HTTP on the namespace's own loopback) ---------------------
spawn etcd etcd --name openshell-k8s --data-dir "$DATA/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster openshell-k8s=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 60 $NS curl -sf http://127.0.0.1:2381/health

# --- containerd + CNI ------------------------------------------------------
cat > "$RUN/containerd/config.toml" <<EOF
version = 2
root = "$DATA/containerd"
state = "$RUN/containerd/state"
[grpc]
  address = "$RUN/containerd/containerd.sock"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$DATA/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  # These machines drop CAP_SYS_RESOURCE from every process's bounding set, so no
  # oom_score_adj can go below containerd's own (kubelet asks -998 for pause).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
EOF
cat > "$RUN/cni/net.d/10-openshell.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "openshell-k8s",
  "plugins": [
    {"type": "bridge", "bridge": "osk8s0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$K8S_POD_CIDR", "gateway": "$K8S_POD_GW"}]],
              "routes": [{"dst": "10.199.0.0/16"}], "dataDir": "$DATA/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
spawn containerd containerd --config "$RUN/containerd/config.toml"
CTR="ctr --address $RUN/containerd/containerd.sock -n k8s.io"
wait_for containerd 60 $CTR version

# The pause image: a static Go binary, no registry.
PAUSE_TAR=$K8S_CACHE/images/pause-3.10.tar
if [ ! -f "$PAUSE_TAR" ]; then
  log "building the pause image"
  mkdir -p "$K8S_CACHE/images" "$RUN/pause-root"
  (cd "$HERE/pause" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-trimpath -mod=mod" go build -ldflags "-s -w" -o "$RUN/pause-root/pause" .)
  python3 "$HERE/oci_image.py" --name "$K8S_PAUSE_IMAGE" --layer "$RUN/pause-root" --entrypoint /pause --user 65535:65535 --out "$PAUSE_TAR" >&2
  rm -rf "$RUN/pause-root"
fi
$CTR images ls -q | grep -qx "$K8S_PAUSE_IMAGE" || $CTR images import "$PAUSE_TAR" >&2

# --- control plane ---------------------------------------------------------
spawn kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$K8S_NODE_IP" \
  --service-cluster-ip-range="$K8S_SERVICE_CIDR" --service-node-port-range=30000-32767 \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=false --profiling=false --v=1
wait_for kube-apiserver 120 $KUBECTL get --raw /readyz

spawn kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$RUN/controller-manager.kubeconfig" --authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$K8S_SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false --v=1
spawn kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$RUN/scheduler.kubeconfig" \
  --authentication-kubeconfig="$RUN/scheduler.kubeconfig" --authorization-kubeconfig="$RUN/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1

# --- node: kubelet + kube-proxy --------------------------------------------
# cgroup v1 machines: the kubelet's pods go under /openshell-k8s in every hierarchy.
# kubelet wants the root in every hierarchy, the named systemd one included.
for h in /sys/fs/cgroup/*/; do
  [ -d "$h" ] && mkdir -p "$h/openshell-k8s"
done
: > "$RUN/resolv.conf"
cat > "$RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /openshell-k8s
failCgroupV1: false
failSwapOn: false
resolvConf: $RUN/resolv.conf
clusterDomain: cluster.local
podLogsDir: $DATA/pod-logs
serializeImagePulls: false
maxPods: 110
podPidsLimit: 4096
oomScoreAdj: 0
evictionHard: {memory.available: 200Mi, nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
EOF
spawn kubelet "$BIN/kubelet" --config="$RUN/kubelet.yaml" --kubeconfig="$RUN/kubelet.kubeconfig" \
  --root-dir="$DATA/kubelet" --node-ip="$K8S_NODE_IP" --hostname-override="$K8S_NODE_NAME" --v=1
spawn kube-proxy "$BIN/kube-proxy" --kubeconfig="$RUN/proxy.kubeconfig" --hostname-override="$K8S_NODE_NAME" \
  --oom-score-adj=0 --proxy-mode=iptables --cluster-cidr="$K8S_POD_CIDR" --nodeport-addresses="$K8S_NODE_IP/32" \
  --iptables-localhost-nodeports=false --conntrack-max-per-core=0 \
  --conntrack-tcp-timeout-established=0s --conntrack-tcp-timeout-close-wait=0s \
  --bind-address=127.0.0.1 --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 --v=1

wait_for "node $K8S_NODE_NAME" 180 $KUBECTL get node "$K8S_NODE_NAME"
$KUBECTL wait --for=condition=Ready "node/$K8S_NODE_NAME" --timeout=180s >&2

# --- agent-sandbox: CRDs + controller (runs on the node, outside pods) ------
$KUBECTL apply --server-side -f "$AGENT_SANDBOX_DIR/crds/" >&2
$KUBECTL wait --for=condition=Established crd/sandboxes.agents.x-k8s.io --timeout=60s >&2
spawn agent-sandbox-controller "$AGENT_SANDBOX_DIR/bin/agent-sandbox-controller" --kubeconfig="$K8S_KUBECONFIG" \
  --leader-elect=false --metrics-bind-address=127.0.0.1:18080 --health-probe-bind-address=127.0.0.1:18081

log "ready: export KUBECONFIG=$K8S_KUBECONFIG  (kubectl: $BIN/kubectl)"
