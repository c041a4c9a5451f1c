#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kubectl)
# and helm from the Go wrapper modules next to this script, into a cache outside the
# work tree. Prints the directory holding the binaries on stdout.
#
# The cache key is a hash of the wrapper modules (go.mod + go.sum), the Go version and
# BUILD_REVISION below (bump it when the build flags change), so the binaries are rebuilt
# only when something that goes into them changes.
#
# Environment:
#   JITRBAC_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/jitrbac)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
BUILD_REVISION=4

key="$( (go version; echo "$BUILD_REVISION"; cat "$here"/*/go.mod "$here"/*/go.sum) | sha256sum | cut -c1-16)"
root="${JITRBAC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jitrbac}"
bin="$root/controlplane-$key/bin"
mkdir -p "$bin"

log() { echo "controlplane: $*" >&2; }

# Version stamped into the Kubernetes binaries: without it /version reports
# v0.0.0-master and kubectl/helm version checks misbehave.
kube_version="$(cd "$here/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
case "$kube_version" in
  v1.*) ;;
  *) echo "controlplane: cannot read the k8s.io/kubernetes version from go.mod" >&2; exit 1 ;;
esac
kube_minor="$(echo "$kube_version" | cut -d. -f2)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1"
  ldflags+=" -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean"
done

build() { # <module dir> <output name> <package> [ldflags]
  local dir="$1" name="$2" pkg="$3" flags="${4:--s -w}"
  if [ -x "$bin/$name" ]; then
    return
  fi
  log "building $name from $pkg (first build takes a while)"
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags "$flags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  log "built $name in $((SECONDS - start))s ($(du -h "$bin/$name" | cut -f1))"
}

build etcd etcd go.etcd.io/etcd/server/v3
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags"
# helm assumes Kubernetes v1.20 for `helm template`/`helm lint` unless told otherwise,
# which fails charts that require a newer kubeVersion: give it the pinned version.
helm_version="$(cd "$here/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done
build helm helm helm.sh/helm/v3/cmd/helm "$helm_ldflags"

# Drop binaries of other pinned versions (about 330 MB each).
for old in "$root"/controlplane-*; do
  if [ "$old" != "$root/controlplane-$key" ] && [ -d "$old" ]; then
    rm -rf "$old"
  fi
done

echo "$bin"
