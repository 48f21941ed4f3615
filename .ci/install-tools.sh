#!/usr/bin/env bash
# Builds the pinned Go tools the tests run for real into .tools/bin (gitignored), through the Go module proxy.
# A tool is rebuilt only when its pinned version changes, so a warm machine skips this in seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
export GOBIN="$bin"

KUBE_SCORE_VERSION=v1.20.0
ACTIONLINT_VERSION=v1.7.12
TILT_VERSION=$(awk '$1 == "require" && $2 == "github.com/tilt-dev/tilt" { print $3 }' "$root/.ci/tools/tilt/go.mod")

installed() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$bin/.$1.version"; }

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

# Tilt's LSP links tree-sitter through cgo, so CGO stays on. Without web assets this binary cannot `tilt up`,
# but it evaluates Tiltfiles (`tilt alpha tiltfile-result`) exactly like a release build.
if installed tilt "$TILT_VERSION"; then echo "tools: tilt $TILT_VERSION present"; else
  echo "tools: building tilt $TILT_VERSION (a few minutes on a cold cache)"
  (cd "$root/.ci/tools/tilt" && CGO_ENABLED=1 go build -mod=readonly -tags=osusergo -o "$bin/tilt" github.com/tilt-dev/tilt/cmd/tilt)
  stamp tilt "$TILT_VERSION"
fi
