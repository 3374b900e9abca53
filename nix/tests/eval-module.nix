# Evaluates nix/module.nix with the NixOS module system of a real nixpkgs `lib`, without
# the rest of NixOS (which CI machines cannot fetch): the NixOS options the module sets
# (users, systemd.services, networking.firewall) are declared here as free-form, and
# `pkgs.formats.toml` is a stand-in that keeps the value instead of writing a file. It checks the module's own options,
# types, defaults and the unit it produces; `nix eval` on flake.nix's example host checks it
# against all of NixOS. Run by scripts/check-nix.sh:
#   nix-instantiate --eval --strict --json nix/tests/eval-module.nix --arg lib 'import NIXPKGS/lib'
{ lib }:

let
  freeform = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    default = { };
  };
  stubPkgs = {
    formats.toml = _: {
      type = lib.types.attrsOf lib.types.anything;
      generate = name: value: {
        outPath = "/nix/store/00000000000000000000000000000000-${name}";
        inherit value;
      };
    };
    callPackage = _: _: {
      type = "derivation";
      name = "xnode";
      outPath = "/nix/store/00000000000000000000000000000000-xnode";
      meta.mainProgram = "xnode";
    };
  };
  evaluate =
    settings:
    (lib.evalModules {
      modules = [
        ../module.nix
        {
          options.users = freeform;
          options.systemd = freeform;
          options.networking = freeform;
          config._module.args.pkgs = stubPkgs;
        }
        settings
      ];
    }).config;
  enabled = evaluate {
    services.xnode = {
      enable = true;
      openFirewall = true;
      settings = {
        zone = "eu-west-1";
        s3_listen = null;
        listen = [
          "/ip4/0.0.0.0/tcp/4101"
          "/ip4/0.0.0.0/udp/4101/quic-v1"
        ];
        storage.quota.max_buckets = 100;
      };
    };
  };
  disabled = evaluate { };
  unit = enabled.systemd.services.xnode;
  # The rendered file is the unit's restart trigger: a change of settings restarts the node.
  written = (builtins.head unit.restartTriggers).value;
  check = name: condition: lib.assertMsg condition "nix/module.nix: ${name}";
in
assert check "a disabled module defines no unit" (!(disabled.systemd ? services));
assert check "the unit runs the package's binary with the rendered settings" (
  unit.serviceConfig.ExecStart
  == "/nix/store/00000000000000000000000000000000-xnode/bin/xnode start --config /nix/store/00000000000000000000000000000000-xnode.toml"
);
assert check "the unit is Type=notify under its own user" (
  unit.serviceConfig.Type == "notify" && unit.serviceConfig.User == "xnode"
);
assert check "the unit is hardened as the Debian one" (
  unit.serviceConfig.ProtectSystem == "strict"
  && unit.serviceConfig.NoNewPrivileges
  && unit.serviceConfig.CapabilityBoundingSet == ""
  && unit.serviceConfig.StateDirectory == "xnode"
);
assert check "settings are rendered, data_dir is the state directory, nulls are left out" (
  written.zone == "eu-west-1"
  && written.data_dir == "/var/lib/xnode"
  && written.storage.quota.max_buckets == 100
  && !(written ? s3_listen)
  && written.api == "127.0.0.1:8080"
);
assert check "the firewall opens the p2p ports of the listen addresses" (
  enabled.networking.firewall.allowedTCPPorts == [ 4101 ]
  && enabled.networking.firewall.allowedUDPPorts == [ 4101 ]
);
assert check "the node gets a system user" enabled.users.users.xnode.isSystemUser;
{
  inherit (unit.serviceConfig) ExecStart Type User;
  settings = written;
  firewall = enabled.networking.firewall;
}
