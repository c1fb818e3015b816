#!/usr/bin/env bash
# Bring up a real single-node Kubernetes cluster on this machine for the e2e
# tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet and kube-proxy built from the k8s.io/kubernetes Go module
# (hack/build-kube.sh), Debian's containerd + runc + CNI plugins, a pause
# image built with go-containerregistry, and cert-manager as a host process
# (test/e2e/certmanager). Needs Linux, root, cgroups (v1 or v2) and apt.
#
#   hack/cluster/up.sh            everything (idempotent: running parts are kept)
#   hack/cluster/down.sh          stop everything, clean up, verify
#
# Environment: E2E_DIR (state, default /var/lib/podgrace-e2e), NODE_IP
# (default 10.250.250.1, added to lo), KUBE_VERSION/ETCD_VERSION (default:
# the Makefile's), E2E_SKIP_APT=1 (do not run apt-get), E2E_KEEP_ON_FAILURE=1
# (leave a failed bring-up running for debugging).
# When up.sh finishes, $E2E_DIR/cluster.env names the kubeconfig, the
# containerd socket and the binaries (the e2e tests read it).
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T0=$SECONDS
phase() { log "== $* (t=$((SECONDS - T0))s)"; }

on_error() {
  local rc=$?
  trap - ERR EXIT
  [ "$rc" -eq 0 ] && return
  echo "[cluster] bring-up FAILED (exit $rc); last lines of the component logs:" >&2
  for f in "$LOG"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  if [ "${E2E_KEEP_ON_FAILURE:-}" = 1 ]; then
    echo "[cluster] E2E_KEEP_ON_FAILURE=1: left running; hack/cluster/down.sh cleans up" >&2
  else
    "$ROOT/hack/cluster/down.sh" >&2 || true
  fi
  exit "$rc"
}
trap on_error EXIT

preflight() {
  [ "$(uname -s)" = Linux ] || die "the e2e cluster needs Linux"
  [ "$(id -u)" = 0 ] || die "the e2e cluster needs root (containerd, iptables, mounts)"
  [ -d /sys/fs/cgroup ] || die "no cgroup filesystem at /sys/fs/cgroup"
  [ "$(uname -m)" = x86_64 ] || die "the e2e images are built for linux/amd64"
}

# Debian packages: containerd, runc and the CNI plugins run the pods;
# iptables and conntrack serve kube-proxy; dash is /bin/sh in the shell-form
# test image; openssl makes the PKI; iproute2 and kmod set up the network.
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack dash openssl iproute2 kmod util-linux procps)
deps() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "apt packages present: ${PACKAGES[*]}"; return; fi
  [ "${E2E_SKIP_APT:-}" = 1 ] && die "missing packages ${missing[*]} and E2E_SKIP_APT=1"
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (Debian/Ubuntu needed)"
  log "installing ${missing[*]} with apt-get"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The containerd package may start the system's own containerd (systemd
  # hosts); that instance is not ours and is left alone: ours has its own
  # socket, root and state directory.
}

build() {
  hack_build=("$ROOT/hack/build-kube.sh" "$KUBE_VERSION" "$ETCD_VERSION" "$KUBE_BIN"
    kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd)
  "${hack_build[@]}"
  log "building cert-manager (host process) -> $E2E_BIN/cert-manager"
  (cd "$ROOT/test/e2e/certmanager" && GOWORK=off CGO_ENABLED=0 "$GO" build -trimpath -o "$E2E_BIN/cert-manager" .)
  log "building the node registry (hack/registry) -> $E2E_BIN/registry"
  (cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -o "$E2E_BIN/registry" ./hack/registry)
}

# The node registry: go-containerregistry's registry with the OCI referrers
# API on (hack/registry; cosign keeps signatures and attestations as
# referrers), in memory, plain HTTP on the node address (reachable from the
# host, containerd and pods, and from nowhere else). The e2e publishes the
# release to it (hack/cluster/publish.sh) and pushes test images to it;
# containerd pulls from it over HTTP (its mirror below).
registry_up() {
  rm -f "$RUN/registry.addr"
  start registry "$E2E_BIN/registry" -addr "$NODE_IP:$REGISTRY_PORT" -addr-file "$RUN/registry.addr"
  waitfor "node registry on $NODE_IP:$REGISTRY_PORT" 30 test -s "$RUN/registry.addr"
}

# PKI: one CA signs the API server's serving certificate and a client
# certificate per component (the kubelet as system:node:NAME so the Node
# authorizer applies). Service-account tokens are signed with sa.key.
pki() {
  [ -f "$PKI/.done" ] && { log "PKI present in $PKI"; return; }
  rm -rf "$PKI" && mkdir -p "$PKI"
  local o=(-days 30 -sha256)
  openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=podgrace-e2e-ca" "${o[@]}" -out "$PKI/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  cert() { # NAME SUBJECT EXTENSIONS
    openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
      "${o[@]}" -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
    rm -f "$PKI/$1.csr" "$PKI/$1.ext"
  }
  local client="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  cert kube-apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  cert admin "/O=system:masters/CN=podgrace-e2e-admin" "$client"
  cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  cert kube-proxy "/CN=system:kube-proxy" "$client"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 600 "$PKI"/*.key
  local c
  for c in admin kube-controller-manager kube-scheduler kubelet kube-proxy; do
    cat >"$ETC/$c.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: podgrace-e2e
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$PKI/ca.crt"}
users:
- name: $c
  user: {client-certificate: "$PKI/$c.crt", client-key: "$PKI/$c.key"}
contexts:
- name: podgrace-e2e
  context: {cluster: podgrace-e2e, user: $c}
current-context: podgrace-e2e
EOF
  done
  cp "$ETC/admin.kubeconfig" "$KUBECONFIG_ADMIN"
  touch "$PKI/.done"
  log "PKI and kubeconfigs written"
}

# Host networking: the node address on lo, forwarding and bridge netfilter
# (kube-proxy's rules must see bridged pod traffic). Original sysctl values
# are saved once, for down.sh to restore.
host_network() {
  if [ ! -f "$RUN/sysctl.orig" ]; then
    local s
    for s in "${SYSCTLS[@]}"; do
      [ -f "/proc/sys/$s" ] && echo "$s=$(cat "/proc/sys/$s")"
    done >"$RUN/sysctl.orig.tmp"
    mv "$RUN/sysctl.orig.tmp" "$RUN/sysctl.orig"
  fi
  modprobe overlay 2>/dev/null || true
  modprobe br_netfilter 2>/dev/null || true
  grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (containerd's overlayfs snapshotter)"
  [ -f /proc/sys/net/bridge/bridge-nf-call-iptables ] || die "no bridge netfilter (br_netfilter) in this kernel"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables
  ip -4 addr show dev lo | grep -q " $NODE_IP/32 " || ip addr add "$NODE_IP/32" dev lo
  # Pods resolve nothing outside the cluster: a resolv.conf that points at
  # the pod's own loopback keeps every lookup on the machine.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$ETC/resolv.conf"
}

containerd_up() {
  mkdir -p "$ETC/cni/net.d" "$E2E_DIR/containerd" "$RUN/containerd"
  # Facts from the prototype (see docs/develop/e2e.md): runc cannot set a negative
  # oom_score_adj without CAP_SYS_RESOURCE (restrict_oom_score_adj); the
  # kubelet uses the cgroupfs driver, so runc must too (SystemdCgroup=false);
  # netns mounts live under the state dir so down.sh finds them.
  cat >"$ETC/containerd.toml" <<EOF
version = 2
root = "$E2E_DIR/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$E2E_DIR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/podgrace-e2e/pause:v1"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ETC/cni/net.d"
  # The node registry (registry_up: plain HTTP on the node address): podgrace's
  # release image and the test images the e2e pushes.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$NODE_IP:$REGISTRY_PORT"]
    endpoint = ["http://$NODE_IP:$REGISTRY_PORT"]
EOF
  cat >"$ETC/cni/net.d/10-podgrace-e2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "podgrace-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$E2E_DIR/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start containerd containerd --config "$ETC/containerd.toml"
  waitfor containerd 60 "$CTR" --address "$CONTAINERD_SOCK" version
  log "building and importing the pause image (go-containerregistry)"
  (cd "$ROOT" && "$GO" run ./test/e2e/images/cmd/e2eimages -out "$E2E_DIR/images" -address "$CONTAINERD_SOCK" -ctr "$CTR" pause)
}

control_plane_up() {
  start etcd "$KUBE_BIN/etcd" --name podgrace-e2e --data-dir "$E2E_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "podgrace-e2e=http://127.0.0.1:$((ETCD_PORT + 10))" \
    --unsafe-no-fsync --log-level warn
  start kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
    --tls-cert-file "$PKI/kube-apiserver.crt" --tls-private-key-file "$PKI/kube-apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key"
  waitfor "kube-apiserver /readyz" 180 kubectl_admin get --raw /readyz
  start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig "$ETC/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$ETC/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$ETC/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR"
  start kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig "$ETC/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$ETC/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$ETC/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
}

node_up() {
  # cgroup v1 hosts need failCgroupV1: false (kubelet 1.35+ refuses v1 by
  # default); the cgroupfs driver matches containerd's SystemdCgroup=false.
  cat >"$ETC/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $ETC/resolv.conf
podLogsDir: $LOG/pods
serializeImagePulls: false
# Imported images are never garbage-collected (there is nowhere to pull them from).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
  mkdir -p "$LOG/pods"
  start kubelet "$KUBE_BIN/kubelet" --config "$ETC/kubelet.yaml" \
    --kubeconfig "$ETC/kubelet.kubeconfig" --root-dir "$E2E_DIR/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" -v 1
  cat >"$ETC/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$ETC/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
nodePortAddresses: ["$NODE_IP/32"]
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
  start kube-proxy "$KUBE_BIN/kube-proxy" --config "$ETC/kube-proxy.yaml" -v 1
  waitfor "node $NODE_NAME registered" 120 kubectl_admin get node "$NODE_NAME"
  waitfor "node $NODE_NAME Ready" 120 kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  waitfor "ServiceAccount default/default" 120 kubectl_admin get serviceaccount default
  waitfor "kube-proxy rules for the kubernetes Service" 60 \
    bash -c "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 'default/kubernetes:https'"
}

cert_manager_up() {
  local crds
  crds=$(cd "$ROOT/test/e2e/certmanager" && GOWORK=off "$GO" list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)/deploy/crds
  [ -d "$crds" ] || die "cert-manager CRDs not found at $crds"
  kubectl_admin apply --server-side -f "$crds" >/dev/null
  kubectl_admin wait --for=condition=Established --timeout=60s crd --all >/dev/null
  kubectl_admin create namespace cert-manager --dry-run=client -o yaml | kubectl_admin apply -f - >/dev/null
  start cert-manager "$E2E_BIN/cert-manager" --kubeconfig "$KUBECONFIG_ADMIN" --cluster-resource-namespace cert-manager
  waitfor "cert-manager running" 30 bash -c "sleep 2; grep -q 'running .* controller loops' '$LOG/cert-manager.log'"
}

write_env() {
  cat >"$E2E_DIR/cluster.env" <<EOF
KUBECONFIG=$KUBECONFIG_ADMIN
CONTAINERD_ADDRESS=$CONTAINERD_SOCK
CTR=$(command -v "$CTR")
KUBECTL=$KUBECTL
KUBE_BIN=$KUBE_BIN
KUBE_VERSION=$KUBE_VERSION
NODE_IP=$NODE_IP
NODE_NAME=$NODE_NAME
REGISTRY=$NODE_IP:$REGISTRY_PORT
E2E_DIR=$E2E_DIR
EOF
}

preflight
mkdir -p "$E2E_DIR" "$ETC" "$RUN" "$LOG"
any_running=false
for c in "${COMPONENTS[@]}"; do running "$c" && any_running=true; done
# A fresh bring-up starts fresh logs (down.sh keeps the last run's).
$any_running || { rm -rf "$LOG" && mkdir -p "$LOG"; }
phase "apt packages"; deps
phase "binaries"; TB=$SECONDS; build; BUILD_SECONDS=$((SECONDS - TB))
TU=$SECONDS
phase "pki"; pki
phase "host network"; host_network
phase "node registry"; registry_up
phase "containerd"; containerd_up
phase "control plane"; control_plane_up
phase "node"; node_up
phase "cert-manager"; cert_manager_up
write_env
trap - EXIT
log "cluster up: build/check ${BUILD_SECONDS}s, bring-up $((SECONDS - TU))s, total $((SECONDS - T0))s"
log "export KUBECONFIG=$KUBECONFIG_ADMIN   (all settings: $E2E_DIR/cluster.env)"
