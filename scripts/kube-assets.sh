#!/usr/bin/env bash
# kube-assets.sh: makes sure the binaries the Kubernetes tests start are there.
#   etcd            Debian's etcd-server package
#   kube-apiserver  built from the published Kubernetes Go modules (tools/kube-apiserver), cached
#   kubectl         Debian's kubernetes-client, unless a kubectl is already installed
# The directory is $STEPFLOW_KUBE_ASSETS, or ~/.cache/stepflow/kube-<version> (see package apiservertest).
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.36.3
dir=${STEPFLOW_KUBE_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/stepflow/kube-$version}
mkdir -p "$dir"

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "kube-assets: need root to apt-get install $*" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v etcd >/dev/null || apt_install etcd-server
command -v kubectl >/dev/null || apt_install kubernetes-client
ln -sf "$(command -v etcd)" "$dir/etcd"
ln -sf "$(command -v kubectl)" "$dir/kubectl"

if [ ! -x "$dir/kube-apiserver" ]; then
  echo "kube-assets: building kube-apiserver $version (once; cached in $dir)" >&2
  (cd tools/kube-apiserver && go build -ldflags "-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36" -o "$dir/kube-apiserver.tmp" .)
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
fi
