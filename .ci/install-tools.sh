#!/usr/bin/env bash
# Installs the pinned tools the tests run for real into .tools/ (gitignored): Node from .node-version, taken from the
# npm registry's node-linux-<arch> package into .tools/node, and Go builds through the Go module proxy into
# .tools/bin. A tool is reinstalled only when its pinned version changes, so a warm machine skips this in seconds.
# `install-tools.sh node` installs Node only, `install-tools.sh go` the Go builds only (.ci/run runs npm ci between
# the two, alongside the builds); no argument does both.
set -euo pipefail
part=${1:-all}
case "$part" in all | node | go) ;; *) echo "usage: $0 [node|go]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
export GOBIN="$bin"

NODE_VERSION=$(cat "$root/.node-version")
KUBE_SCORE_VERSION=v1.20.0
ACTIONLINT_VERSION=v1.7.12
TILT_VERSION=$(awk '$1 == "require" && $2 == "github.com/tilt-dev/tilt" { print $3 }' "$root/.ci/tools/tilt/go.mod")

installed() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$bin/.$1.version"; }

# The registry serves Node's official Linux binaries as npm packages; npm checks the tarball's integrity.
node_dir="$root/.tools/node"
if [ "$part" = go ]; then
  :
elif [ "$(uname -s)" != Linux ]; then
  echo "tools: node: the registry has no $(uname -s) package; use Node $NODE_VERSION from nvm, fnm or Homebrew (node@24)"
elif [ -x "$node_dir/bin/node" ] && [ "$("$node_dir/bin/node" --version)" = "v$NODE_VERSION" ]; then
  echo "tools: node $NODE_VERSION present"
else
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) echo "tools: no Node package for $(uname -m)" >&2; exit 1 ;; esac
  echo "tools: installing node $NODE_VERSION (node-linux-$arch from the npm registry)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null)
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  tar -xzf "$tmp"/node-linux-"$arch"-*.tgz --strip-components=1 -C "$node_dir" package/bin/node package/LICENSE
fi

[ "$part" = node ] && exit 0

# The control plane's modules are the largest download: `go list -deps` fetches exactly those its build needs while
# the smaller tools compile.
kube_mod="$root/.ci/tools/kube/go.mod"
kube_pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler go.etcd.io/etcd/server/v3 sigs.k8s.io/kwok/cmd/kwok"
# shellcheck disable=SC2086 # a list of package paths
(cd "$root/.ci/tools/kube" && go list -mod=readonly -deps $kube_pkgs > /dev/null) &
kube_download=$!

if installed kube-score "$KUBE_SCORE_VERSION"; then echo "tools: kube-score $KUBE_SCORE_VERSION present"; else
  echo "tools: building kube-score $KUBE_SCORE_VERSION"
  go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  stamp kube-score "$KUBE_SCORE_VERSION"
fi

if installed actionlint "$ACTIONLINT_VERSION"; then echo "tools: actionlint $ACTIONLINT_VERSION present"; else
  echo "tools: building actionlint $ACTIONLINT_VERSION"
  go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  stamp actionlint "$ACTIONLINT_VERSION"
fi

# A source build of Tilt has no web assets, so it cannot `tilt up` (it reports itself as vX-dev); it evaluates
# Tiltfiles (`tilt alpha tiltfile-result`) exactly like a release build, which is all the tests need. Its name keeps
# it from passing for the `tilt` users install from https://docs.tilt.dev/install.html. Tilt's LSP links tree-sitter
# through cgo, so CGO stays on.
eval_tilt=tilt-tiltfile-eval
# Earlier versions of this script built it as .tools/bin/tilt; keep that build under its new name.
if [ -x "$bin/tilt" ]; then
  mv "$bin/tilt" "$bin/$eval_tilt"
  mv -f "$bin/.tilt.version" "$bin/.$eval_tilt.version" 2>/dev/null || true
fi
if installed "$eval_tilt" "$TILT_VERSION"; then echo "tools: $eval_tilt (tilt $TILT_VERSION, for tests) present"; else
  echo "tools: building $eval_tilt from tilt $TILT_VERSION (a few minutes on a cold cache)"
  (cd "$root/.ci/tools/tilt" && CGO_ENABLED=1 go build -mod=readonly -tags=osusergo -o "$bin/$eval_tilt" github.com/tilt-dev/tilt/cmd/tilt)
  stamp "$eval_tilt" "$TILT_VERSION"
fi

# CoreDNS: the image of mx-dns, whose tag k8s/base/mx-dns/mx-dns.yaml pins. The real-binary tier (npm run test:kumod)
# runs this build as mx-dns and as the cluster's DNS; the version comes from that manifest, so the two never differ.
COREDNS_VERSION=v$(sed -n 's|.*image: coredns/coredns:\([0-9.]*\)$|\1|p' "$root/k8s/base/mx-dns/mx-dns.yaml")
if installed coredns "$COREDNS_VERSION"; then echo "tools: coredns $COREDNS_VERSION present"; else
  echo "tools: building coredns $COREDNS_VERSION (a few minutes on a cold cache)"
  go install "github.com/coredns/coredns@$COREDNS_VERSION"
  stamp coredns "$COREDNS_VERSION"
fi

# A real Kubernetes control plane for test/control-plane: kube-apiserver, kube-controller-manager, kube-scheduler,
# etcd and kwok (it plays nodes and pods, so no kubelet or container runtime is needed). Kubernetes 1.36 is a minor
# that kind, k3d, minikube and Docker Desktop all run today. One `go build` compiles the packages they share once
# (1.36 has no cloud-provider code left for the old providerless/dockerless tags to cut). kwok's own stage files (how
# nodes, pods and volumes progress) are copied from the same module version, so the two never differ.
wait "$kube_download"
KUBE_VERSION="kubernetes $(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$kube_mod") etcd $(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$kube_mod") kwok $(awk '$1 == "sigs.k8s.io/kwok" { print $2 }' "$kube_mod")"
kube_tools="kube-apiserver kube-controller-manager kube-scheduler etcd kwok"
kube_present=true
for t in $kube_tools; do installed "$t" "$KUBE_VERSION" || kube_present=false; done
[ -d "$root/.tools/share/kwok-stages" ] || kube_present=false
if $kube_present; then echo "tools: control plane ($KUBE_VERSION) present"; else
  echo "tools: building the control plane ($KUBE_VERSION; the longest build here on a cold cache)"
  kube_out=$(mktemp -d)
  # shellcheck disable=SC2086 # a list of package paths
  (cd "$root/.ci/tools/kube" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' -o "$kube_out/" $kube_pkgs)
  # go names the etcd server's main package after its module path's last element before /v3.
  mv "$kube_out/server" "$kube_out/etcd"
  kwok_src=$(cd "$root/.ci/tools/kube" && go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  stages="$root/.tools/share/kwok-stages"
  rm -rf "$stages" && mkdir -p "$stages"
  cp "$kwok_src"/kustomize/stage/node/fast/node-initialize.yaml \
    "$kwok_src"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$kwok_src"/kustomize/stage/pod/fast/pod-{ready,complete,delete}.yaml \
    "$kwok_src"/kustomize/stage/volume/fast/{pv-bind,pv-delete,pvc-provision,pvc-delete,storage-class}.yaml "$stages/"
  chmod -R u+w "$stages"
  for t in $kube_tools; do mv -f "$kube_out/$t" "$bin/$t" && stamp "$t" "$KUBE_VERSION"; done
  rmdir "$kube_out"
fi
