#!/usr/bin/env bash
# `make demo`: the main job end to end, on a local control plane.
#
# Builds what is missing, starts the local control plane (unless one is already running
# from `make cluster-up`), installs the CRDs and the chart's admission layer (webhooks,
# admission policies, eligibility ClusterRoles), runs the operator, and then shows, as
# the people involved would see it:
#   - alice may not ask for access before she is made eligible, and never for a role she
#     is not eligible for;
#   - alice, once eligible, applies deploy/examples/demo-grant.yaml herself (edit in
#     namespace `demo` for 20 seconds) and the operator records her as the requester;
#   - the grant Active, its RoleBinding with the expiry annotation, alice's access
#     appearing and disappearing on time, the grant Expired, the Events and the audit lines.
# Stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER_DIR=${CLUSTER_DIR:-.cluster}
NS=demo
GRANT=alice-edit

bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
# Runs a command that is expected to fail, and fails the demo if it succeeds.
refused() {
  printf '\033[2m$ %s\033[0m\n' "$*"
  if "$@"; then
    echo "demo: expected this to be refused" >&2
    return 1
  fi
}
# A free TCP port on 127.0.0.1 for the operator's admission webhook.
free_port() {
  local port
  for port in $(seq 18443 18543); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "demo: no free port in 18443-18543" >&2
  return 1
}
# Waits (up to about 5 s) until `kubectl auth can-i list secrets` for alice in $NS says
# $1: the API server's RBAC cache trails a binding change by a few milliseconds.
await_access() {
  for _ in $(seq 1 50); do
    [ "$(kubectl auth can-i list secrets -n "$NS" --as alice 2>/dev/null)" = "$1" ] && return 0
    sleep 0.1
  done
}

bold "Building the control plane (first time: several minutes) and the operator"
BIN="$(bash tests/controlplane/build.sh)"
cargo build --quiet --locked --bin jitrbac --example cluster
export PATH="$BIN:$PATH"
JITRBAC=target/debug/jitrbac

started_cluster=0
operator_pid=""
admission_installed=0
# The chart's admission layer as the demo installs it (webhooks reached on 127.0.0.1:$PORT).
admission_objects() {
  helm template jitrbac charts/jitrbac --namespace default \
    --set "webhook.url=https://127.0.0.1:$PORT" --set "admissionPolicies.extraStatusWriters={admin}" \
    --show-only templates/webhooks.yaml --show-only templates/admissionpolicies.yaml \
    --show-only templates/eligibility-roles.yaml
}
cleanup() {
  local rc=$?
  if [ -n "$operator_pid" ]; then
    kill "$operator_pid" 2>/dev/null || true
    wait "$operator_pid" 2>/dev/null || true
  fi
  if [ "$started_cluster" = 0 ] && [ "$admission_installed" = 1 ]; then
    # The control plane stays up: without the operator, its webhooks (which fail closed)
    # would refuse every new grant, so take the admission layer away again.
    bold "Removing the demo's admission layer from the control plane (it stays up)"
    admission_objects | kubectl delete --ignore-not-found -f - >/dev/null || true
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
ALICE="$CLUSTER_DIR/alice.kubeconfig"

bold "Installing the CRDs"
$JITRBAC crds | run kubectl apply --server-side --force-conflicts -f -
run kubectl wait --for=condition=Established crd --all --timeout=30s

PORT="$(free_port)"
bold "Installing the chart's admission layer: webhooks (served by the operator on 127.0.0.1:$PORT), admission policies, eligibility ClusterRoles"
# The operator runs outside the cluster as the local admin, so the admin may write grant status.
admission_installed=1
admission_objects | run kubectl apply --server-side --force-conflicts -f -

bold "Starting the operator (logs: $CLUSTER_DIR/demo-operator.log, audit lines: $CLUSTER_DIR/demo-audit.jsonl)"
$JITRBAC run --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
  --webhook-addr "127.0.0.1:$PORT" --webhook-hosts 127.0.0.1 \
  --webhook-secret-namespace default --webhook-configuration jitrbac \
  >"$CLUSTER_DIR/demo-audit.jsonl" 2>"$CLUSTER_DIR/demo-operator.log" &
operator_pid=$!

bold "A fresh namespace '$NS'"
kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
run kubectl create namespace "$NS"

echo "(waiting for the operator's admission webhook to answer)"
for i in $(seq 1 150); do
  kubectl create --dry-run=server -f deploy/examples/demo-grant.yaml >/dev/null 2>&1 && break
  if [ "$i" = 150 ] || ! kill -0 "$operator_pid" 2>/dev/null; then
    echo "demo: the admission webhook did not come up" >&2
    exit 1
  fi
  sleep 0.2
done

bold "Before anything: may alice list secrets in $NS? May she request 'edit' there?"
run kubectl auth can-i list secrets -n "$NS" --as alice || true
run kubectl auth can-i request clusterroles.jitrbac.io/edit -n "$NS" --as alice || true

bold "alice asks for 'edit' in $NS anyway (as alice, with her own kubeconfig): refused, she may not even create AccessGrants yet"
refused kubectl --kubeconfig "$ALICE" create -f deploy/examples/demo-grant.yaml

bold "The platform team makes alice eligible to request 'edit' in $NS, and nothing else"
run kubectl create rolebinding alice-may-request-edit -n "$NS" --clusterrole=jitrbac-requester-edit --user=alice
run kubectl auth can-i request clusterroles.jitrbac.io/edit -n "$NS" --as alice
run kubectl auth can-i request clusterroles.jitrbac.io/cluster-admin -n "$NS" --as alice || true

# The admission policies take effect a moment after they are created.
CLUSTER_ADMIN_GRANT="$(sed 's/name: edit/name: cluster-admin/; s/name: alice-edit/name: alice-admin/' deploy/examples/demo-grant.yaml)"
for i in $(seq 1 100); do
  out="$(echo "$CLUSTER_ADMIN_GRANT" | kubectl --kubeconfig "$ALICE" create --dry-run=server -f - 2>&1 || true)"
  [[ "$out" == *jitrbac-eligibility* ]] && break
  if [ "$i" = 100 ]; then
    echo "demo: the jitrbac-eligibility admission policy did not take effect" >&2
    exit 1
  fi
  sleep 0.1
done

bold "alice tries 'cluster-admin' instead: refused at admission, she is eligible for 'edit' only"
refused bash -c "sed 's/name: edit/name: cluster-admin/; s/name: alice-edit/name: alice-admin/' deploy/examples/demo-grant.yaml |
  kubectl --kubeconfig '$ALICE' create -f -"

bold "alice asks for 'edit' in $NS for 20 seconds"
run cat deploy/examples/demo-grant.yaml
run kubectl --kubeconfig "$ALICE" create -f deploy/examples/demo-grant.yaml
run kubectl wait accessgrant/$GRANT -n "$NS" --for=jsonpath='{.status.phase}'=Active --timeout=30s
run kubectl get accessgrants -n "$NS"

bold "Who asked: the webhook recorded alice's identity from the API server, not from the request"
run kubectl get accessgrant $GRANT -n "$NS" -o jsonpath='{.spec.requester}{"\n"}'

bold "The RoleBinding the operator created (note the expiry annotation and the owner)"
binding="$(kubectl get accessgrant $GRANT -n "$NS" -o jsonpath='{.status.bindings[0].name}')"
run kubectl get rolebinding "$binding" -n "$NS" -o yaml

bold "During the grant: may alice list secrets in $NS?"
await_access yes
run kubectl auth can-i list secrets -n "$NS" --as alice

bold "Waiting for the grant to expire at $(kubectl get accessgrant $GRANT -n "$NS" -o jsonpath='{.status.expiresAt}')"
run kubectl wait accessgrant/$GRANT -n "$NS" --for=jsonpath='{.status.phase}'=Expired --timeout=60s
run kubectl get accessgrants -n "$NS" -o wide

bold "The binding is gone"
run kubectl get rolebindings -n "$NS" -l app.kubernetes.io/managed-by=jitrbac

bold "After the grant: may alice list secrets in $NS?"
await_access no
run kubectl auth can-i list secrets -n "$NS" --as alice || true

bold "The Events on the grant (kubectl describe shows them too)"
run kubectl events -n "$NS" --for accessgrant/$GRANT

bold "The audit trail: one JSON line per transition on the operator's stdout"
run cat "$CLUSTER_DIR/demo-audit.jsonl"

bold "Done: alice got exactly the access she was eligible for, for exactly 20 seconds, and it was removed on time."
