#!/usr/bin/env bash
# Build the kubelet of one pinned Kubernetes release from the Go module proxy
# with the machine's Go, into TOOLS_DIR/bin (default: .tools/ at the repo
# root, git-ignored).  Test tooling only (dev/kubelet_node.py).
#
#   dev/kubelet/build.sh v1.36.5
#
# k8s.io/kubernetes cannot be built as a dependency as it is: its go.mod
# requires its staging modules (k8s.io/api, k8s.io/client-go...) at v0.0.0
# and replaces them with folders (./staging/src/...) that its module zip
# leaves out.  So the build runs in a throwaway main module, in a temporary
# folder, that requires k8s.io/kubernetes at the release and replaces every
# staging module named in its go.mod with the published v0.MINOR.PATCH of the
# same release (k8s.io/api v0.36.5 for v1.36.5).  Checksums are verified
# against the checksum database as usual.  On success TOOLS_DIR/stamps/
# kubelet-VERSION is written, and nothing is done while that stamp exists.
set -euo pipefail

version=${1:?usage: build.sh v1.MINOR.PATCH}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${TOOLS_DIR:-$root/.tools}
go=${GO:-/usr/local/go/bin/go}
stamp=$tools/stamps/kubelet-$version
staging=v0.${version#v1.}

[ -e "$stamp" ] && exit 0
[ -x "$go" ] || { echo "build.sh: no Go toolchain at $go (set GO=...)" >&2; exit 1; }
mkdir -p "$tools/bin" "$tools/stamps"
export GOTOOLCHAIN=local GOFLAGS=-trimpath GO111MODULE=on
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/kubelet-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

gomod=$(cd "$work" && "$go" mod download -json "k8s.io/kubernetes@$version" |
        sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[ -n "$gomod" ] && [ -f "$gomod" ] || { echo "build.sh: k8s.io/kubernetes@$version: no go.mod" >&2; exit 1; }
goversion=$(sed -n 's/^go \(.*\)$/\1/p' "$gomod")
{
    echo "module kubelet-build"
    echo
    echo "go $goversion"
    echo
    # The same defaults for the runtime's GODEBUG settings as upstream's build.
    sed -n '/^godebug /p' "$gomod"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    sed -n 's|^\t\(k8s.io/[^ ]*\) => ./staging/.*$|\t\1 => \1 '"$staging"'|p' "$gomod"
    echo ")"
} > "$work/go.mod"

pkg=k8s.io/component-base/version
minor=${version#v1.}
minor=${minor%%.*}
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
# Upstream builds the kubelet static, without cgo, too.
(cd "$work" &&
 CGO_ENABLED=0 "$go" build -mod=mod -ldflags "$ldflags" -o "$tools/bin/kubelet" k8s.io/kubernetes/cmd/kubelet)

touch "$stamp"
echo "built kubelet $version in $(( $(date +%s) - start )) s"
