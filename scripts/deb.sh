#!/bin/sh
# deb.sh — `make deb`: builds the Debian package of this tree.
#
#   scripts/deb.sh
#
# Installs what is missing for it (PKG_DEBS of scripts/deps.sh and
# debian/control's Build-Depends, nothing else), copies the tree (without
# build/, node_modules/, data/ and .git) to build/deb/chatd-VERSION/ and runs
# dpkg-buildpackage there (binary only, unsigned, DEB_BUILD_OPTIONS=nocheck:
# no test suite; offline), so the work tree's build/ and a running `make
# test` are left alone. Then lintian: any error fails, warnings are printed.
# Leaves build/deb/chatd_VERSION_ARCH.deb (and the .buildinfo, .changes and
# the -dbgsym .ddeb beside it) and prints its path last.
#
# The version is debian/changelog's; with a VERSION file (the project's
# version) they must agree, so a release gets its changelog entry:
#   dch -v "$(cat VERSION)" "..."   (or edit debian/changelog by hand)
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

PKG_DEBS=$(sed -n 's/^PKG_DEBS="\(.*\)"$/\1/p' scripts/deps.sh)
missing=""
for p in $PKG_DEBS; do
    installed "$p" || missing="$missing $p"
done
# dpkg-checkbuilddeps (dpkg-dev) names the Build-Depends that are missing.
if installed dpkg-dev; then
    unmet=$(dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
        sed 's/([^)]*)//g; s/|[^ ]*//g')
    missing="$missing $unmet"
fi
missing=$(echo $missing)
if [ -n "$missing" ]; then
    echo "deb: installing Debian packages: $missing"
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
    # debhelper-compat is a virtual package debhelper provides
    dpkg-checkbuilddeps
fi

VERSION=$(dpkg-parsechangelog -S Version)
if [ -f VERSION ] && [ "$(tr -d ' \n' <VERSION)" != "$VERSION" ]; then
    echo "deb: VERSION says $(cat VERSION) but debian/changelog says $VERSION:" \
        "add a changelog entry for it (dch -v $(cat VERSION))" >&2
    exit 1
fi
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
OUT=build/deb
SRC=$OUT/chatd-$VERSION
DEB=$OUT/chatd_${VERSION}_$ARCH.deb

rm -rf "$OUT"
mkdir -p "$SRC"
tar -C "$ROOT" --exclude=./build --exclude=./node_modules --exclude=./data --exclude=./.git \
    --exclude='*.gcda' --exclude='*.gcno' --exclude=__pycache__ -cf - . | tar -C "$SRC" -xf -

JOBS=$(nproc 2>/dev/null || echo 2)
echo "deb: dpkg-buildpackage in $SRC"
start=$(date +%s)
(cd "$SRC" && DEB_BUILD_OPTIONS="nocheck parallel=$JOBS" \
    dpkg-buildpackage --build=binary --no-sign) >"$OUT/build.log" 2>&1 || {
    tail -n 40 "$OUT/build.log" >&2
    echo "deb: dpkg-buildpackage failed (whole log: $OUT/build.log)" >&2
    exit 1
}
rm -rf "$SRC"
echo "deb: built in $(($(date +%s) - start)) s (log: $OUT/build.log)"

# lintian on the .changes: the .deb and its .buildinfo. Errors fail; the
# rest (warnings, info) is printed for whoever reads it.
if lintian --fail-on error --info --display-level '>=warning' "$OUT"/chatd_"${VERSION}"_"$ARCH".changes \
    >"$OUT/lintian.log" 2>&1; then
    echo "deb: lintian: no errors, $(grep -c '^W:' "$OUT/lintian.log" || true) warning(s)"
    grep '^W:' "$OUT/lintian.log" | sed 's/^/    /' || true
else
    cat "$OUT/lintian.log" >&2
    echo "deb: lintian found errors (above, and in $OUT/lintian.log)" >&2
    exit 1
fi
echo "$DEB"
