# Shared by hack/cluster/up.sh and hack/cluster/down.sh (sourced, not run).
#
# One single-node Kubernetes cluster per machine: its state, PIDs and logs
# live under $E2E_DIR; the node's address is $NODE_IP, added to the loopback
# device (no traffic leaves the machine); pods get 10.244.0.0/24 on the cni0
# bridge; Services get 10.96.0.0/16.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GO=${GO:-go}

# Pinned versions: the Makefile exports them; a direct run reads its defaults.
makefile_default() { sed -n "s/^$1 ?= *//p" "$ROOT/Makefile" | head -1; }
KUBE_VERSION=${KUBE_VERSION:-$(makefile_default KUBE_VERSION)}
ETCD_VERSION=${ETCD_VERSION:-$(makefile_default ETCD_VERSION)}
KUBE_BIN=${KUBE_BIN:-$ROOT/bin/k8s/$KUBE_VERSION-linux-amd64}
E2E_BIN=${E2E_BIN:-$ROOT/bin/e2e}

E2E_DIR=${E2E_DIR:-/var/lib/podgrace-e2e}
NODE_IP=${NODE_IP:-10.250.250.1}
NODE_NAME=${NODE_NAME:-podgrace-e2e}
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
CLUSTER_CIDR=10.244.0.0/16
POD_SUBNET=10.244.0.0/24
BRIDGE=cni0
ETCD_PORT=23790
REGISTRY_PORT=5000

PKI=$E2E_DIR/pki
ETC=$E2E_DIR/etc
RUN=$E2E_DIR/run
LOG=$E2E_DIR/log
KUBECONFIG_ADMIN=$E2E_DIR/kubeconfig
CONTAINERD_SOCK=$RUN/containerd/containerd.sock
KUBECTL=$KUBE_BIN/kubectl
CTR=${CTR:-ctr}

# Components in start order; down.sh stops them in reverse, except that
# kube-apiserver must stop before etcd (it hangs on SIGTERM once etcd is gone).
# registry is the node registry (hack/registry, in memory, plain HTTP on
# $NODE_IP:$REGISTRY_PORT): the e2e publishes the release to it
# (hack/cluster/publish.sh) and pushes test images to it.
COMPONENTS=(registry containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy cert-manager)

# Kernel settings the cluster changes (ip_forward, bridge netfilter; the
# kubelet sets the vm/kernel ones): saved by up.sh, restored by down.sh.
SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables
  vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/conf/all/route_localnet)

log() { echo "[cluster $(date +%T)] $*"; }
die() { echo "[cluster $(date +%T)] ERROR: $*" >&2; exit 1; }

kubectl_admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_k8s() { "$CTR" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# alive PID: the process exists and is not a zombie.
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && [ "${s:0:1}" != Z ]; }

pid_of() { [ -f "$RUN/$1.pid" ] && cat "$RUN/$1.pid"; }

running() { local p; p=$(pid_of "$1") && alive "$p"; }

# start NAME CMD...: run CMD in its own session (so its process group can be
# signalled by the recorded PID), log to $LOG/NAME.log, record $RUN/NAME.pid.
start() {
  local name=$1; shift
  if running "$name"; then log "$name already running (pid $(pid_of "$name"))"; return; fi
  setsid "$@" >>"$LOG/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!)"
}

# stop NAME [TIMEOUT]: SIGTERM the process group of the recorded PID, wait,
# then SIGKILL it. Only PIDs this harness recorded are ever signalled.
stop() {
  local name=$1 timeout=${2:-20} p i
  p=$(pid_of "$name") || return 0
  if alive "$p"; then
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < timeout * 4; i++)); do alive "$p" || break; sleep 0.25; done
    if alive "$p"; then
      log "$name (pid $p) ignored SIGTERM for ${timeout}s: SIGKILL"
      kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
      for ((i = 0; i < 20; i++)); do alive "$p" || break; sleep 0.25; done
    fi
    log "stopped $name (pid $p)"
  fi
  rm -f "$RUN/$name.pid"
}

# waitfor DESCRIPTION TIMEOUT_SECONDS CMD...: poll CMD every 0.5 s.
waitfor() {
  local desc=$1 timeout=$2 start=$SECONDS; shift 2
  while ! "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= timeout)); then
      log "TIMEOUT after ${timeout}s waiting for $desc"
      return 1
    fi
    sleep 0.5
  done
  log "ready: $desc ($((SECONDS - start))s)"
}
