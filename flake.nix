{
  description = "Xnode: a permissionless, decentralized cloud (replicated storage behind S3, WebAssembly compute)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forEachSystem = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forEachSystem (pkgs: {
        xnode = pkgs.callPackage ./nix/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.xnode;
      });

      # `imports = [ xnode.nixosModules.default ];` then `services.xnode.enable = true;`.
      nixosModules.xnode =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.xnode.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.xnode;
        };
      nixosModules.default = self.nixosModules.xnode;

      # A small host running a node, to evaluate the module against real NixOS:
      # nix eval .#nixosConfigurations.example.config.systemd.services.xnode.serviceConfig.ExecStart
      nixosConfigurations.example = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          self.nixosModules.xnode
          {
            boot.isContainer = true;
            system.stateVersion = "25.11";
            services.xnode = {
              enable = true;
              openFirewall = true;
              settings = {
                zone = "eu-west-1";
                bootstrap = [ "/ip4/192.0.2.10/tcp/4001" ];
                storage.quota.max_buckets = 100;
              };
            };
          }
        ];
      };

      # `nix flake check` evaluates the example host's unit (building it builds xnode).
      checks.x86_64-linux.xnode-unit =
        self.nixosConfigurations.example.config.systemd.units."xnode.service".unit;
    };
}
