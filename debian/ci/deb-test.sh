#!/usr/bin/env bash
# The Debian package, built, linted, installed, run and purged (make deb-test).
#
#   debian/ci/deb-test.sh              the whole check, as root on Debian 12; the last line
#                                      is "deb-test: PASS ..." or "deb-test: FAIL: ..." and the
#                                      exit status is non-zero on failure
#   debian/ci/deb-test.sh build DIR    only build and lint; copy the .deb into DIR (make deb)
#
# The package is built out of a copy of the tree in a temp dir (dpkg-buildpackage writes
# ../*.deb), with the build dependencies from debian/control installed by apt. The check
# then installs the .deb with apt (pulling Debian's python3-* packages), checks its files,
# runs /usr/bin/twistd3 image-cri-shim from the installed package against a sandbox node
# (debian/ci/smoke.py: containerd and a registry from dev/sandbox.py), and purges it.
# Everything it starts and installs is stopped, removed or purged on exit.
set -uo pipefail

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
unset PYTHONPATH PYTHONHOME

repo=$(cd "$(dirname "$0")/../.." && pwd)
package=image-cri-shim
mode=test
outdir=
if [ "${1:-}" = build ]; then
  mode=build
  outdir=${2:?usage: $0 build DIR}
  mkdir -p "$outdir" && outdir=$(cd "$outdir" && pwd)
fi

started=$SECONDS
work=
installed_by_us=0
apt_updated=0

say() { echo "deb-test: $*"; }

fail() {
  say "FAIL: $*"
  exit 1
}

cleanup() {
  if [ "$installed_by_us" = 1 ] && dpkg -s "$package" >/dev/null 2>&1; then
    say "cleanup: purging $package"
    apt-get purge -y -qq "$package" >/dev/null 2>&1 || dpkg --purge "$package" >/dev/null 2>&1
  fi
  if [ -n "$work" ]; then
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq || fail "apt-get update failed"
    apt_updated=1
  fi
}

# ensure_packages PKG...: install those not installed yet.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || fail "missing Debian packages: ${missing[*]} (run as root to install them)"
  apt_update_once
  say "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
}

# check DESCRIPTION COMMAND...: run COMMAND; fail the whole test unless it succeeds.
check() {
  local description=$1
  shift
  if "$@"; then
    echo "  ok: $description"
  else
    fail "$description"
  fi
}

[ -r /etc/debian_version ] && command -v apt-get >/dev/null || fail "needs Debian (apt-get, dpkg)"
if [ "$mode" = test ] && [ "$(id -u)" != 0 ]; then
  fail "needs root (it installs the package and runs containerd)"
fi

# --- a copy of the tree ---------------------------------------------------------------------
work=$(mktemp -d /tmp/ics-deb.XXXXXX)
src=$work/$package
mkdir "$src"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and new files, not ignored ones (.venv, build/, generated _proto): what a clone
  # plus the uncommitted changes would hold.
  (cd "$repo" && git ls-files -z -c -o --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$src" -xf - \
    || fail "copying the tree"
else
  tar -C "$repo" --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./.git \
    --exclude='*.egg-info' --exclude=./cri_shim/_proto --exclude='__pycache__' \
    --exclude='_trial_temp*' -cf - . | tar -C "$src" -xf - || fail "copying the tree"
fi
version=$(cd "$src" && dpkg-parsechangelog -S Version) || fail "reading debian/changelog"

# --- build dependencies ---------------------------------------------------------------------
ensure_packages dpkg-dev
if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
  [ "$(id -u)" = 0 ] || fail "$(cd "$src" && dpkg-checkbuilddeps 2>&1) (run as root to install them)"
  apt_update_once
  say "installing the build dependencies"
  apt-get build-dep -y -qq --no-install-recommends "$src" >/dev/null \
    || fail "apt-get build-dep failed"
fi
ensure_packages lintian

# --- build ----------------------------------------------------------------------------------
say "building $package $version in $work"
build_started=$SECONDS
(cd "$work" && dpkg-source -b "$package" >"$work/source.log" 2>&1) || {
  tail -n 30 "$work/source.log" | sed "s/^/  | /"
  fail "dpkg-source -b failed"
}
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
  tail -n 60 "$work/build.log" | sed "s/^/  | /"
  fail "dpkg-buildpackage failed (log above)"
}
build_seconds=$((SECONDS - build_started))
deb=$work/${package}_${version}_all.deb
[ -f "$deb" ] || fail "no $deb after the build"
grep -E '^(Ran|PASSED|FAILED) ' "$work/build.log" | sed 's/^/  build-time unit tests: /'
say "built $(basename "$deb") in ${build_seconds}s"

# --- lintian --------------------------------------------------------------------------------
lintian --fail-on error --tag-display-limit 0 "$work/${package}_${version}.dsc" "$deb" \
  >"$work/lintian.log" 2>&1
lintian_status=$?
grep -v 'running with root privileges' "$work/lintian.log" | sed 's/^/  lintian: /'
[ "$lintian_status" = 0 ] || fail "lintian reports errors"
echo "  ok: lintian: no errors"
check "lintian finds a manual page for every command" \
  bash -c "! grep -q no-manual-page '$work/lintian.log'"
check "the package holds man/man1/image-cri-shim-ctl.1.gz" \
  bash -c "dpkg-deb -c '$deb' | grep -q ' ./usr/share/man/man1/image-cri-shim-ctl.1.gz$'"

if [ "$mode" = build ]; then
  cp "$deb" "$outdir/"
  say "PASS: $outdir/$(basename "$deb") (build ${build_seconds}s, total $((SECONDS - started))s)"
  exit 0
fi

# --- install --------------------------------------------------------------------------------
ensure_packages containerd docker-registry apache2-utils
if dpkg -s "$package" >/dev/null 2>&1; then
  # Left by an earlier run? Purge it only if its config is the shipped one, untouched.
  shipped=$(dpkg-query -W -f='${Conffiles}' "$package" | awk '$1 == "/etc/image-cri-shim.yaml" {print $2}')
  if [ -f /etc/image-cri-shim.yaml ] \
     && [ "$(md5sum </etc/image-cri-shim.yaml | cut -d' ' -f1)" != "$shipped" ]; then
    fail "$package is installed here with a changed /etc/image-cri-shim.yaml; this test purges it: remove it first"
  fi
  say "purging the $package installed before this run (its config is the shipped one)"
  apt-get purge -y -qq "$package" >/dev/null || fail "purging the earlier $package"
fi
say "installing $(basename "$deb")"
installed_by_us=1
apt-get install -y -q --no-install-recommends "$deb" >"$work/install.log" 2>&1 || {
  tail -n 30 "$work/install.log" | sed "s/^/  | /"
  fail "apt-get install $(basename "$deb") failed"
}
check "$package $version installed" \
  test "$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$package")" = "installed $version"
check "/etc/image-cri-shim.yaml is a conffile" \
  grep -q '^ /etc/image-cri-shim.yaml ' <(dpkg-query -W -f='${Conffiles}\n' "$package")
check "/etc/image-cri-shim.yaml is root's, mode 0600" \
  test "$(stat -c '%U %a' /etc/image-cri-shim.yaml)" = "root 600"
check "the unit is conf/image-cri-shim.service" \
  cmp -s /lib/systemd/system/image-cri-shim.service "$repo/conf/image-cri-shim.service"
check "the unit is enabled (multi-user.target.wants)" \
  test -L /etc/systemd/system/multi-user.target.wants/image-cri-shim.service
check "the unit's Documentation= file exists" \
  test -f /usr/share/doc/image-cri-shim/README.md
check "no dropin.cache in the package" \
  bash -c "! dpkg -L $package | grep -q dropin.cache"
check "no dev tooling or tests in the package (dev/, tests/, sandbox, demo, CRI test client)" \
  bash -c "! dpkg -L $package | grep -qE '/(dev|tests)(/|$)|sandbox|demo|cri_client'"
check "every wing of the shim is in the package" \
  bash -c "for w in model serve registries sync ops testing; do dpkg -L $package | grep -q /cri_shim/\$w/__init__.py || exit 1; done"
plugins=/usr/lib/python3/dist-packages/twisted/plugins
check "the twisted-plugins-cache trigger rebuilt the plugin cache with image_cri_shim" \
  grep -qa image_cri_shim "$plugins/dropin.cache"
check "twistd3 lists the image-cri-shim plugin" \
  bash -c "cd / && /usr/bin/twistd3 --help | grep -q '^ *image-cri-shim '"
mkdir "$work/protoc"
/usr/bin/protoc -I "$src/proto" --python_out="$work/protoc" runtime/v1/api.proto \
  runtime/v1alpha2/api.proto || fail "protoc on proto/"
for api in v1 v1alpha2; do
  check "cri_shim/_proto/runtime/$api/api_pb2.py is what Debian's protoc generates" \
    cmp -s "$work/protoc/runtime/$api/api_pb2.py" \
      "/usr/lib/python3/dist-packages/cri_shim/_proto/runtime/$api/api_pb2.py"
done
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify image-cri-shim.service" \
    systemd-analyze verify /lib/systemd/system/image-cri-shim.service
fi

# --- run the installed shim -----------------------------------------------------------------
say "running the installed shim against a sandbox node"
(cd "$work" && /usr/bin/python3 -I "$repo/debian/ci/smoke.py" "$repo" "$work") \
  || fail "the installed shim against a sandbox node (output above)"

# --- purge ----------------------------------------------------------------------------------
say "purging $package"
apt-get purge -y -q "$package" >"$work/purge.log" 2>&1 || {
  tail -n 30 "$work/purge.log" | sed "s/^/  | /"
  fail "apt-get purge $package failed"
}
installed_by_us=0
check "$package is gone from dpkg's database" \
  bash -c "! dpkg-query -W -f='\${db:Status-Status}' $package 2>/dev/null | grep -qv '^not-installed$'"
for path in /etc/image-cri-shim.yaml /lib/systemd/system/image-cri-shim.service \
    /etc/systemd/system/multi-user.target.wants/image-cri-shim.service \
    /usr/lib/python3/dist-packages/cri_shim "$plugins/image_cri_shim.py" \
    /usr/bin/image-cri-shim-ctl; do
  check "$path removed" test ! -e "$path" -a ! -L "$path"
done
check "no compiled image_cri_shim plugin left" \
  bash -c "! ls $plugins/__pycache__/image_cri_shim.* >/dev/null 2>&1"
check "the plugin cache no longer names image_cri_shim" \
  bash -c "! grep -qa image_cri_shim $plugins/dropin.cache"

say "PASS ($package $version: build ${build_seconds}s, total $((SECONDS - started))s)"
