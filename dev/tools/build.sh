#!/usr/bin/env bash
# Build one pinned piece of test tooling from the Go module proxy with the
# machine's Go, into TOOLS_DIR (default: .tools/ at the repo root, git-ignored).
#
#   dev/tools/build.sh cri-tools  v1.37.0   crictl, critest
#   dev/tools/build.sh containerd v2.4.2    containerd, containerd-shim-runc-v2, ctr
#   dev/tools/build.sh images     VERSION   the stand-in test image programs
#                                           (dev/tools/images/*, our own code)
#   dev/tools/build.sh cri-api    v0.37.2   k8s.io/cri-api's .proto files, left
#                                           in the module cache and linked
#                                           from TOOLS_DIR/cri-api/VERSION
#
# The module's source is fetched with `go mod download` (checksums verified
# against go.sum / the checksum database), copied into TOOLS_DIR/src and built
# there with its own go.mod and go.sum, as upstream's Makefile builds it.  On
# success TOOLS_DIR/stamps/NAME-VERSION is written, and nothing is done while
# that stamp exists: `make tools` runs this only when a pinned version changes.
# GOMODCACHE and GOCACHE are Go's defaults unless set; nothing lands in the
# repository outside TOOLS_DIR.
set -euo pipefail

name=${1:?usage: build.sh cri-tools|containerd|images|cri-api VERSION}
version=${2:?usage: build.sh NAME VERSION}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${TOOLS_DIR:-$root/.tools}
go=${GO:-/usr/local/go/bin/go}
bin=$tools/bin
stamp=$tools/stamps/$name-$version

[ -e "$stamp" ] && exit 0
[ -x "$go" ] || { echo "build.sh: no Go toolchain at $go (set GO=...)" >&2; exit 1; }
mkdir -p "$bin" "$tools/stamps" "$tools/src"
export GOTOOLCHAIN=local GOFLAGS=-trimpath GO111MODULE=on
start=$(date +%s)

# The module's folder in the module cache (read-only), downloaded if need be.
module_dir() {
    local dir
    dir=$("$go" mod download -json "$1@$version" |
          sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "build.sh: $1@$version: no source" >&2; exit 1; }
    echo "$dir"
}

# The module's source, copied to a writable folder of its own.
module_source() {
    local dir dest=$tools/src/$(basename "$1")@$version
    dir=$(module_dir "$1")
    rm -rf "$dest"
    cp -r "$dir" "$dest"
    chmod -R u+w "$dest"
    echo "$dest"
}

case $name in
cri-tools)
    src=$(module_source sigs.k8s.io/cri-tools)
    ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}"
    (cd "$src" &&
     CGO_ENABLED=0 "$go" build -mod=readonly -ldflags "$ldflags" -o "$bin/crictl" ./cmd/crictl &&
     CGO_ENABLED=0 "$go" test -mod=readonly -c -ldflags "$ldflags" -o "$bin/critest" ./cmd/critest)
    ;;
containerd)
    src=$(module_source github.com/containerd/containerd/v2)
    pkg=github.com/containerd/containerd/v2
    ldflags="-X $pkg/version.Version=$version -X $pkg/version.Revision=$version -X $pkg/version.Package=$pkg"
    # Static, no cgo: btrfs needs cgo and headers; devmapper and zfs are
    # snapshotters the sandbox never uses.
    tags="urfave_cli_no_docs no_btrfs no_devmapper no_zfs"
    (cd "$src" &&
     CGO_ENABLED=0 "$go" build -mod=readonly -tags "$tags" -ldflags "$ldflags" -o "$bin/containerd" ./cmd/containerd &&
     CGO_ENABLED=0 "$go" build -mod=readonly -tags "$tags" -ldflags "$ldflags" -o "$bin/ctr" ./cmd/ctr &&
     CGO_ENABLED=0 "$go" build -mod=readonly -tags "$tags no_grpc" -ldflags "$ldflags" \
         -o "$bin/containerd-shim-runc-v2" ./cmd/containerd-shim-runc-v2)
    ;;
images)
    # Tiny static programs for critest's stand-in images (no dependencies).
    out=$tools/images
    mkdir -p "$out"
    for dir in "$here"/images/*/; do
        prog=$(basename "$dir")
        (cd "$dir" && CGO_ENABLED=0 "$go" build -ldflags "-s -w" -o "$out/$prog" .)
    done
    ;;
cri-api)
    # Nothing to build: tests read its api.proto files where Go left them.
    mkdir -p "$tools/cri-api"
    ln -sfn "$(module_dir k8s.io/cri-api)" "$tools/cri-api/$version"
    ;;
*)
    echo "build.sh: unknown tool $name" >&2
    exit 2
    ;;
esac

rm -rf "$tools/src"
touch "$stamp"
echo "built $name $version in $(( $(date +%s) - start )) s"
