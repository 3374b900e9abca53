#!/usr/bin/env bash
# Builds the Debian package of xnode from a built binary, with dpkg-deb alone (no debhelper
# or cargo-deb to install): the binary, the hardened systemd unit, the default configuration
# in /etc/xnode (conffiles), the maintainer scripts and the docs.
#
#   ./scripts/build-deb.sh                       # release build, package into target/debian
#   ./scripts/build-deb.sh --binary target/debug/xnode --out /tmp/pkg
#
# DEB_COMPRESSION (xz by default) is passed to dpkg-deb -Z: the package test uses none, since
# compressing a debug binary with xz takes minutes on a busy 2-core machine.
#
# Prints the path of the .deb on its last line.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
out="$ROOT/target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  (cd "$ROOT" && cargo build --release --locked -p xnode >&2)
  binary="$ROOT/target/release/xnode"
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb is not installed" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)
src="$ROOT/packaging/debian"
stage=$(mktemp -d "${TMPDIR:-/tmp}/xnode-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

install -D -m 0755 "$binary" "$stage/usr/bin/xnode"
install -D -m 0644 "$src/xnode.service" "$stage/lib/systemd/system/xnode.service"
# xnode@NAME.service: several nodes on one host (a test network, or one per disk), each with
# /etc/xnode/NAME.toml, /etc/default/xnode-NAME and /var/lib/xnode/NAME. Derived from the
# main unit so the two cannot drift apart in their hardening.
sed -e 's|^Description=Xnode node|Description=Xnode node %i|' \
    -e 's|^EnvironmentFile=-/etc/default/xnode$|EnvironmentFile=-/etc/default/xnode-%i|' \
    -e 's|--config /etc/xnode/xnode.toml$|--config /etc/xnode/%i.toml|' \
    -e 's|^StateDirectory=xnode$|StateDirectory=xnode/%i|' \
    -e 's|^WorkingDirectory=/var/lib/xnode$|WorkingDirectory=/var/lib/xnode/%i|' \
    "$src/xnode.service" > "$stage/lib/systemd/system/xnode@.service"
for setting in 'EnvironmentFile=-/etc/default/xnode-%i' 'config /etc/xnode/%i.toml' \
               'StateDirectory=xnode/%i' 'WorkingDirectory=/var/lib/xnode/%i'; do
  grep -qF -- "$setting" "$stage/lib/systemd/system/xnode@.service" \
    || { echo "error: xnode@.service lacks $setting (xnode.service changed?)" >&2; exit 1; }
done
chmod 0644 "$stage/lib/systemd/system/xnode@.service"
install -D -m 0644 "$src/xnode.toml" "$stage/etc/xnode/xnode.toml"
install -D -m 0644 "$src/default" "$stage/etc/default/xnode"
doc="$stage/usr/share/doc/xnode"
install -D -m 0644 "$ROOT/README.md" "$doc/README.md"
install -D -m 0644 "$ROOT/docs/configuration.md" "$doc/configuration.md"
for f in "$ROOT"/docs/operations/*.md; do
  [ -f "$f" ] && install -D -m 0644 "$f" "$doc/operations/$(basename "$f")"
done
install -D -m 0644 "$ROOT/dashboards/xnode-grafana.json" "$doc/xnode-grafana.json"
[ -f "$ROOT/dashboards/xnode-alerts.yml" ] && install -m 0644 "$ROOT/dashboards/xnode-alerts.yml" "$doc/"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: xnode

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

mkdir -p "$stage/DEBIAN"
install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$stage/DEBIAN/"
printf '/etc/xnode/xnode.toml\n/etc/default/xnode\n' > "$stage/DEBIAN/conffiles"
size_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: xnode
Version: $version
Architecture: $arch
Maintainer: Xnode developers <xnode@example.invalid>
Section: net
Priority: optional
Installed-Size: $size_kib
Depends: adduser, libc6
Description: Xnode node: a permissionless, decentralized cloud
 Runs one node of an Xnode network: replicated, encrypted storage behind an
 S3-compatible API, sandboxed WebAssembly compute and network-wide observability.
 The node runs as the xnode system user under a hardened systemd unit.
CONTROL

mkdir -p "$out"
deb="$out/xnode_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >&2
echo "$deb"
