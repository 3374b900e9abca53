# NixOS module of an Xnode node: `services.xnode.enable = true;`.
#
# `services.xnode.settings` is the node's configuration file (docs/configuration.md), written
# as Nix and rendered to TOML; every key is optional and an unknown key is an error at start.
# The unit carries the same hardening as the Debian package's (packaging/debian/xnode.service),
# so the two ways of running a node behave alike; docs/operations/ explains each choice.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.xnode;
  settingsFormat = pkgs.formats.toml { };
  # The state directory is the unit's StateDirectory; the node keeps its key, database and
  # chunks there.
  stateDir = "/var/lib/xnode";
  # TOML has no null: an option set to null (no S3 gateway, say) is left out of the file.
  configFile = settingsFormat.generate "xnode.toml" (
    lib.filterAttrsRecursive (_: value: value != null) ({ data_dir = stateDir; } // cfg.settings)
  );
  # The p2p ports come from the listen addresses, as "/ip4/0.0.0.0/tcp/4001".
  portsOf =
    protocol:
    lib.unique (
      lib.concatMap (
        address:
        let
          found = builtins.match ".*/${protocol}/([0-9]+).*" address;
        in
        if found == null then [ ] else [ (lib.toInt (builtins.head found)) ]
      ) (cfg.settings.listen or [ ])
    );
in
{
  options.services.xnode = {
    enable = lib.mkEnableOption "an Xnode node (decentralized storage, S3 and WebAssembly compute)";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The xnode package to run.";
    };

    settings = lib.mkOption {
      description = ''
        The node's configuration (docs/configuration.md), rendered to xnode.toml. `data_dir`
        is set to the unit's state directory, ${stateDir}.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          network = "xnode";
          zone = "eu-west-1";
          bootstrap = [ "/ip4/192.0.2.10/tcp/4001" ];
          storage.quota.max_stored_bytes = 1099511627776;
        }
      '';
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options = {
          listen = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [
              "/ip4/0.0.0.0/tcp/4001"
              "/ip4/0.0.0.0/udp/4001/quic-v1"
            ];
            description = "Peer-to-peer listen addresses (multiaddrs), TCP and QUIC.";
          };
          api = lib.mkOption {
            type = lib.types.str;
            default = "127.0.0.1:8080";
            description = ''
              Address of the control API and the Studio. Loopback by default: put TLS in front
              (`http.tls`, or a proxy) before opening it.
            '';
          };
          s3_listen = lib.mkOption {
            type = lib.types.nullOr lib.types.str;
            default = "127.0.0.1:9000";
            description = "Address of the S3 gateway, or null for none.";
          };
          network = lib.mkOption {
            type = lib.types.str;
            default = "xnode";
            description = "The network to join; nodes only join nodes of the same network.";
          };
          zone = lib.mkOption {
            type = lib.types.str;
            default = "default";
            description = "Where this host is (rack, site or region); placement spreads replicas over zones.";
          };
          bootstrap = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            description = "Multiaddrs of peers to join through.";
          };
        };
      };
    };

    environmentFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        A file of NAME=VALUE lines (for example XNODE_LOG=debug) that override the settings,
        kept out of the Nix store.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Open the peer-to-peer ports of `settings.listen` (TCP and UDP) in the firewall. The API
        and S3 ports are not opened: they listen on loopback unless configured otherwise.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.xnode = {
      isSystemUser = true;
      group = "xnode";
      home = stateDir;
      description = "Xnode node";
    };
    users.groups.xnode = { };

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = portsOf "tcp";
      allowedUDPPorts = portsOf "udp";
    };

    systemd.services.xnode = {
      description = "Xnode node (decentralized storage, S3 and WebAssembly compute)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = {
        # The node says READY=1 (sd_notify) once its ports are bound and it has joined.
        Type = "notify";
        NotifyAccess = "main";
        User = "xnode";
        Group = "xnode";
        ExecStart = "${lib.getExe cfg.package} start --config ${configFile}";
        EnvironmentFile = lib.mkIf (cfg.environmentFile != null) cfg.environmentFile;
        KillSignal = "SIGTERM";
        TimeoutStartSec = 120;
        TimeoutStopSec = 60;
        Restart = "on-failure";
        RestartSec = "5s";
        StateDirectory = "xnode";
        StateDirectoryMode = "0700";
        WorkingDirectory = stateDir;
        UMask = "0077";
        LimitNOFILE = 65536;

        # Hardening: the node needs the network, its state directory and nothing else.
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        # Not ProcSubset = "pid": the node reports its load and free memory (/proc/stat,
        # /proc/meminfo) to the network, which places work by them.
        # AF_NETLINK: libp2p watches the host's interfaces to know its own addresses.
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
          "AF_NETLINK"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        SystemCallErrorNumber = "EPERM";
        # Not set on purpose: MemoryDenyWriteExecute. Wasmtime compiles guests to machine
        # code at run time and must map that code executable.
      };
    };
  };
}
