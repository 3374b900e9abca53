# The xnode binary, built from this repository's sources with the locked dependencies.
# `nix build .#xnode` (flake.nix) or `pkgs.callPackage ./nix/package.nix { }`.
{
  lib,
  rustPlatform,
  cmake,
  perl,
  pkg-config,
}:

let
  workspace = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "xnode";
  inherit (workspace.workspace.package) version;

  # The repository without its build outputs, editor files or the Nix files themselves
  # (so editing them does not rebuild the binary).
  src = lib.cleanSourceWith {
    src = lib.cleanSource ../.;
    filter =
      path: type:
      let
        relative = lib.removePrefix (toString ../. + "/") (toString path);
      in
      !(lib.hasPrefix "target" relative)
      && !(lib.hasPrefix "nix" relative)
      && relative != "flake.nix"
      && relative != "flake.lock";
  };
  cargoLock.lockFile = ../Cargo.lock;

  # aws-lc-sys (rustls's and QUIC's crypto) builds C with cmake and perl.
  nativeBuildInputs = [
    cmake
    perl
    pkg-config
  ];

  cargoBuildFlags = [
    "--package"
    "xnode"
  ];
  # The test suite starts multi-node clusters, a browser and S3 clients (scripts/test.sh);
  # it does not run in the Nix sandbox.
  doCheck = false;

  meta = {
    description = "A permissionless, decentralized cloud: replicated storage behind S3, WebAssembly compute, network-wide observability";
    license = lib.licenses.asl20;
    mainProgram = "xnode";
    platforms = lib.platforms.linux;
  };
}
