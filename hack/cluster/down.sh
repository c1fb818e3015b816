#!/usr/bin/env bash
# Tear down the e2e cluster hack/cluster/up.sh started, and verify that
# nothing is left: no process, mount, iptables chain, bridge, address or
# cgroup of it. Exits non-zero if something remains. Safe to run twice, or
# after a failed or partial bring-up.
#
# Order matters: the controller manager stops first (nothing recreates pods),
# pods are deleted so the kubelet tears their sandboxes down through CNI,
# then the kubelet, kube-proxy, the API server (before etcd: it hangs on
# SIGTERM once etcd is gone), etcd; leftover containers are killed through
# containerd, containerd stops, the node registry stops, then mounts,
# iptables chains, the bridge, the node address and the kernel settings are
# cleaned or restored.
#
# E2E_KEEP_STATE=1 keeps $E2E_DIR's files (PKI, etcd data, images) for a
# faster next bring-up; by default everything but the logs is removed.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "down.sh needs root"
if [ ! -d "$E2E_DIR" ]; then log "nothing to do: no $E2E_DIR"; exit 0; fi
T0=$SECONDS

# 1. Drain the node while the control plane still works.
if running kube-apiserver && running kubelet; then
  stop cert-manager
  stop kube-controller-manager
  stop kube-scheduler
  log "deleting every pod (the kubelet stops sandboxes through CNI)"
  timeout 30 "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" delete pods --all-namespaces --all \
    --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  # Running tasks are the pod sandboxes and containers not yet stopped.
  waitfor "the kubelet to stop every pod" 60 \
    bash -c "! '$CTR' --address '$CONTAINERD_SOCK' -n k8s.io tasks ls 2>/dev/null | grep -q RUNNING" || true
fi

# 2. Stop the components, the API server before etcd.
for c in cert-manager kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop "$c"
done

# 3. kube-proxy's own cleanup of its KUBE-* chains.
[ -x "$KUBE_BIN/kube-proxy" ] && "$KUBE_BIN/kube-proxy" --cleanup >>"$LOG/kube-proxy-cleanup.log" 2>&1 || true

# 4. Containers left behind: kill and delete them through containerd, so
#    their shims exit; then stop containerd.
if running containerd; then
  for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill --signal SIGKILL "$t" >/dev/null 2>&1 || true; done
  for _ in $(seq 20); do [ -z "$(ctr_k8s tasks ls -q 2>/dev/null | head -1)" ] && break
    for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks delete --force "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
  done
  for c in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers delete "$c" >/dev/null 2>&1 || true; done
  stop containerd
fi
# The node registry (in memory: the release and the images pushed to it go with it).
stop registry

# Shims of our containerd (started by it, in their own sessions): identified
# by our socket on their command line, signalled by PID.
our_shims() {
  local p
  for p in $(pgrep -f containerd-shim 2>/dev/null || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "-address $CONTAINERD_SOCK" && echo "$p"
  done
}
# Processes still inside the kubelet's pod cgroups are containers of ours.
pod_processes() {
  local f
  for f in $(find /sys/fs/cgroup -path '*kubepods*' -name cgroup.procs 2>/dev/null); do cat "$f" 2>/dev/null; done | sort -un
}
for p in $(pod_processes) $(our_shims); do kill -KILL "$p" 2>/dev/null || true; done
for _ in $(seq 20); do [ -z "$(our_shims)$(pod_processes)" ] && break; sleep 0.25; done

# 5. Mounts under the state directory (overlay rootfs, shm, netns, kubelet
#    volumes), deepest first.
unmount_ours() {
  awk -v d="$E2E_DIR/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
unmount_ours; unmount_ours

# 6. iptables: every KUBE-* chain (kube-proxy, kubelet) and CNI-* chain (the
#    bridge plugin's masquerade, portmap), and the jumps to them.
clean_chains() {
  local ipt table rules chains c
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      rules=$("$ipt" -t "$table" -S 2>/dev/null) || continue
      { grep -E -- '^-A [^ ]+ .*-j (KUBE-|CNI-)' <<<"$rules" || true; } | { grep -vE -- '^-A (KUBE-|CNI-)' || true; } |
        sed 's/^-A /-D /' | while read -r r; do eval "$ipt -t $table $r" 2>/dev/null || true; done
      chains=$(sed -n -E 's/^-N ((KUBE-|CNI-)[^ ]*)$/\1/p' <<<"$rules")
      for c in $chains; do "$ipt" -t "$table" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -t "$table" -X "$c" 2>/dev/null || true; done
    done
  done
}
clean_chains

# 7. The pod bridge and the node address.
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null || true
ip -4 addr show dev lo | grep -q " $NODE_IP/32 " && ip addr delete "$NODE_IP/32" dev lo || true

# 8. Kernel settings as they were before up.sh.
if [ -f "$RUN/sysctl.orig" ]; then
  while IFS='=' read -r k v; do [ -n "$k" ] && echo "$v" >"/proc/sys/$k" 2>/dev/null || true; done <"$RUN/sysctl.orig"
  rm -f "$RUN/sysctl.orig"
  log "kernel settings restored"
fi

# 9. The kubelet's pod cgroups (empty now), deepest first.
find /sys/fs/cgroup -depth -type d -path '*kubepods*' -exec rmdir {} \; 2>/dev/null || true

# 10. Verify.
problems=()
for c in "${COMPONENTS[@]}"; do running "$c" && problems+=("$c still running (pid $(pid_of "$c"))"); done
[ -n "$(our_shims)" ] && problems+=("containerd shims still running: $(our_shims | xargs)")
[ -n "$(pod_processes)" ] && problems+=("processes left in pod cgroups: $(pod_processes | xargs)")
left_mounts=$(awk -v d="$E2E_DIR/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts)
[ -n "$left_mounts" ] && problems+=("mounts left: $(echo "$left_mounts" | xargs)")
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  for table in filter nat mangle raw; do
    left=$("$ipt" -t "$table" -S 2>/dev/null | grep -E -- '(KUBE-|CNI-)' | head -3 || true)
    [ -n "$left" ] && problems+=("$ipt -t $table still has: $(echo "$left" | xargs)")
  done
done
ip link show "$BRIDGE" >/dev/null 2>&1 && problems+=("bridge $BRIDGE still exists")
veths=$(ip -o link show type veth 2>/dev/null | grep -c "master $BRIDGE" || true)
[ "${veths:-0}" != 0 ] && problems+=("$veths veth devices still on $BRIDGE")
ip -4 addr show dev lo | grep -q " $NODE_IP/32 " && problems+=("$NODE_IP still on lo")
[ -n "$(find /sys/fs/cgroup -type d -path '*kubepods*' 2>/dev/null | head -1)" ] && problems+=("kubepods cgroups left")

if [ ${#problems[@]} -gt 0 ]; then
  printf '[cluster] LEFTOVER: %s\n' "${problems[@]}" >&2
  die "teardown incomplete; state kept in $E2E_DIR"
fi

# 11. State (nothing is mounted under it any more).
if [ "${E2E_KEEP_STATE:-}" != 1 ]; then
  find "$E2E_DIR" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
fi
log "cluster down and verified clean in $((SECONDS - T0))s (no process, mount, KUBE-/CNI- chain, bridge, address or pod cgroup left)"
