#!/usr/bin/env bash
# `make demo`: the main job end to end, on a local control plane.
#
# Builds what is missing, starts the local control plane (unless one is already running
# from `make cluster-up`), installs the CRDs, runs the operator, applies
# deploy/examples/demo-grant.yaml (alice may edit in namespace `demo` for 20 seconds) and
# shows, as a user would see it: the grant Active, its RoleBinding with the expiry
# annotation, alice's access appearing and disappearing, the grant Expired, the Events and
# the audit lines. Stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER_DIR=${CLUSTER_DIR:-.cluster}
NS=demo
GRANT=alice-edit

bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

bold "Building the control plane (first time: several minutes) and the operator"
BIN="$(bash tests/controlplane/build.sh)"
cargo build --quiet --locked --bin jitrbac --example cluster
export PATH="$BIN:$PATH"
JITRBAC=target/debug/jitrbac

started_cluster=0
operator_pid=""
cleanup() {
  local rc=$?
  if [ -n "$operator_pid" ]; then
    kill "$operator_pid" 2>/dev/null || true
    wait "$operator_pid" 2>/dev/null || true
  fi
  if [ "$started_cluster" = 1 ]; then
    bold "Stopping the local control plane"
    cargo run --quiet --locked --example cluster -- down --dir "$CLUSTER_DIR" || true
  fi
  if [ "$rc" != 0 ]; then
    echo "demo failed; operator log: $CLUSTER_DIR/demo-operator.log, control plane logs: $CLUSTER_DIR/logs/" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

bold "Starting a local control plane (etcd, kube-apiserver with RBAC, kube-controller-manager)"
if cargo run --quiet --locked --example cluster -- up --dir "$CLUSTER_DIR" | tee /dev/stderr | grep -q "already running"; then
  echo "(using the control plane started by make cluster-up; it stays up)"
else
  started_cluster=1
fi
export KUBECONFIG="$PWD/$CLUSTER_DIR/kubeconfig"

bold "Installing the AccessGrant CRD"
$JITRBAC crds | run kubectl apply --server-side -f -
run kubectl wait --for=condition=Established crd/accessgrants.jitrbac.io --timeout=30s

bold "Starting the operator (logs: $CLUSTER_DIR/demo-operator.log, audit lines: $CLUSTER_DIR/demo-audit.jsonl)"
$JITRBAC run --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
  >"$CLUSTER_DIR/demo-audit.jsonl" 2>"$CLUSTER_DIR/demo-operator.log" &
operator_pid=$!

bold "A fresh namespace '$NS'"
kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
run kubectl create namespace "$NS"

bold "Before the grant: may alice list secrets in $NS?"
run kubectl auth can-i list secrets -n "$NS" --as alice || true

bold "alice asks for 'edit' in $NS for 20 seconds"
run cat deploy/examples/demo-grant.yaml
run kubectl apply -f deploy/examples/demo-grant.yaml
run kubectl wait accessgrant/$GRANT -n "$NS" --for=jsonpath='{.status.phase}'=Active --timeout=30s
run kubectl get accessgrants -n "$NS"

bold "The RoleBinding the operator created (note the expiry annotation and the owner)"
binding="$(kubectl get accessgrant $GRANT -n "$NS" -o jsonpath='{.status.bindings[0].name}')"
run kubectl get rolebinding "$binding" -n "$NS" -o yaml

bold "During the grant: may alice list secrets in $NS?"
for _ in $(seq 1 50); do
  [ "$(kubectl auth can-i list secrets -n "$NS" --as alice 2>/dev/null)" = yes ] && break
  sleep 0.1 # the API server's RBAC cache trails the binding by a few milliseconds
done
run kubectl auth can-i list secrets -n "$NS" --as alice

bold "Waiting for the grant to expire at $(kubectl get accessgrant $GRANT -n "$NS" -o jsonpath='{.status.expiresAt}')"
run kubectl wait accessgrant/$GRANT -n "$NS" --for=jsonpath='{.status.phase}'=Expired --timeout=60s
run kubectl get accessgrants -n "$NS" -o wide

bold "The binding is gone"
run kubectl get rolebindings -n "$NS" -l app.kubernetes.io/managed-by=jitrbac

bold "After the grant: may alice list secrets in $NS?"
for _ in $(seq 1 50); do
  [ "$(kubectl auth can-i list secrets -n "$NS" --as alice 2>/dev/null)" = no ] && break
  sleep 0.1
done
run kubectl auth can-i list secrets -n "$NS" --as alice || true

bold "The Events on the grant (kubectl describe shows them too)"
run kubectl events -n "$NS" --for accessgrant/$GRANT

bold "The audit trail: one JSON line per transition on the operator's stdout"
run cat "$CLUSTER_DIR/demo-audit.jsonl"

bold "Done: access was granted for exactly 20 seconds and removed on time."
