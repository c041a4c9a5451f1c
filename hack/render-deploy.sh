#!/usr/bin/env bash
# Regenerates deploy/jitrbac.yaml: the Helm chart in charts/jitrbac rendered with its
# default values for release "jitrbac" in namespace "jitrbac-system", so that
# `kubectl apply -k deploy/` installs exactly what `helm install` would.
#
# Uses the helm binary built by tests/controlplane/build.sh (pinned version, cached), so
# the output is deterministic. Run it after any change to the chart or to the CRDs:
#
#   bash hack/render-deploy.sh          # rewrite deploy/jitrbac.yaml
#   bash hack/render-deploy.sh --check  # exit 1 if deploy/jitrbac.yaml is out of date
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# The lowest Kubernetes version the chart supports (Chart.yaml kubeVersion). Passed
# explicitly because `helm template` would otherwise assume the version compiled into
# helm; the rendered objects do not depend on it.
KUBE_VERSION=1.33.0

helm="$(bash tests/controlplane/build.sh)/helm"
out=deploy/jitrbac.yaml

render() {
  cat <<'HEADER'
# GENERATED FILE - DO NOT EDIT.
# The Helm chart charts/jitrbac rendered with its default values, for release "jitrbac"
# in namespace "jitrbac-system". Regenerate with: bash hack/render-deploy.sh
# Install with: kubectl apply -k deploy/   (creates the namespace too)
HEADER
  "$helm" template jitrbac charts/jitrbac \
    --namespace jitrbac-system \
    --kube-version "$KUBE_VERSION"
}

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
render >"$tmp"

if [ "$check" = 1 ]; then
  if ! diff -u "$out" "$tmp"; then
    echo "$out is out of date with charts/jitrbac: run bash hack/render-deploy.sh" >&2
    exit 1
  fi
  exit 0
fi
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out" >&2
