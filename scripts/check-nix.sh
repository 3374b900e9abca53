#!/usr/bin/env bash
# Checks the Nix files (flake.nix, nix/): every file parses with Nix's own parser, and, when
# a nixpkgs `lib` is at hand, the NixOS module evaluates with the real module system and
# produces the expected unit (nix/tests/eval-module.nix).
#
# CI machines can install Nix (Debian's nix-bin) but cannot fetch nixpkgs, so CI parses
# only. With nixpkgs available, evaluate everything against all of NixOS:
#   nix flake check
#   nix eval .#nixosConfigurations.example.config.systemd.services.xnode.serviceConfig.ExecStart
# or only the module, against a nixpkgs checkout:
#   NIXPKGS_LIB=/path/to/nixpkgs/lib ./scripts/check-nix.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix-instantiate >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing nix-bin (Debian) to parse the Nix files"
    { apt-get install -y -qq --no-install-recommends nix-bin >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends nix-bin >/dev/null 2>&1; }; } \
      || true
  fi
fi
if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "note: Nix is not installed and cannot be here; the Nix files are not checked"
  exit 0
fi

files=(flake.nix nix/*.nix nix/tests/*.nix)
for file in "${files[@]}"; do
  nix-instantiate --parse "$file" >/dev/null 2> >(grep -v "build-users-group" >&2)
done
echo "nix: ${#files[@]} files parse"

if [ -n "${NIXPKGS_LIB:-}" ]; then
  nix-instantiate --eval --strict --json nix/tests/eval-module.nix \
    --arg lib "import ${NIXPKGS_LIB}" >/dev/null 2> >(grep -v "build-users-group" >&2)
  echo "nix: the NixOS module evaluates with nixpkgs lib at $NIXPKGS_LIB and makes the expected unit"
else
  echo "note: the NixOS module was not evaluated (no nixpkgs here; set NIXPKGS_LIB=/path/to/nixpkgs/lib)"
fi
