# Pinned versions of everything the single-node test cluster is built from.
# Sourced by the other scripts in scripts/k8s/; change a version here and the
# cache key (a directory named after it) changes with it.
K8S_VERSION=v1.34.4           # k8s.io/kubernetes (kubelet 1.34 still runs on cgroup v1)
K8S_STAGING_VERSION=v0.34.4   # the published k8s.io/* modules cut from the same release
HELM_VERSION=v4.3.2           # helm.sh/helm/v4
AGENT_SANDBOX_VERSION=v1.0.1  # sigs.k8s.io/agent-sandbox (controller + CRDs)
K8S_CACHE=${OPENSHELL_K8S_CACHE:-/var/cache/openshell/k8s}
K8S_RUN=${OPENSHELL_K8S_RUN:-/run/openshell-k8s}
K8S_BIN="$K8S_CACHE/$K8S_VERSION/bin"
HELM_BIN="$K8S_CACHE/helm-$HELM_VERSION/bin"
AGENT_SANDBOX_DIR="$K8S_CACHE/agent-sandbox-$AGENT_SANDBOX_VERSION"
K8S_DATA=${OPENSHELL_K8S_DATA:-/var/lib/openshell-k8s}
# The cluster lives in its own network namespace: its loopback, iptables rules
# (kube-proxy) and bridge are private. Every address is in 10.199.0.0/16, in
# 10.199.200-212.x, which no other test suite uses (they take 10.199.0-146.x and .250).
K8S_NETNS=openshell-k8s
K8S_HOST_IP=10.199.212.1      # host end of the veth link (/30)
K8S_NODE_IP=10.199.212.2      # node end: kubelet's node IP, apiserver advertise address
K8S_POD_CIDR=10.199.200.0/21  # bridge osk8s0, gateway .1
K8S_POD_GW=10.199.200.1
K8S_SERVICE_CIDR=10.199.208.0/22
K8S_API_SERVICE_IP=10.199.208.1
K8S_NODE_NAME=openshell-k8s-node
K8S_PAUSE_IMAGE=docker.io/openshell/pause:3.10
K8S_API="https://$K8S_NODE_IP:6443"
K8S_KUBECONFIG="$K8S_RUN/admin.kubeconfig"
