#!/usr/bin/env bash
# A real systemd for a machine where systemd is not PID 1 (a container, a CI or sandbox VM):
# boots /lib/systemd/systemd as PID 1 of new PID and mount namespaces, sharing the host's
# filesystem and network, so that packages installed on the host run as systemd services
# (hardening, Type=notify readiness, restarts, the journal) and their ports are reachable
# from the host. Needs root.
#
#   sudo scripts/systemd-sandbox.sh start        # boots it; prints the PID of its systemd
#   sudo scripts/systemd-sandbox.sh run CMD...   # runs CMD inside (systemctl, journalctl, ...)
#   sudo scripts/systemd-sandbox.sh stop         # powers it off (every service in it stops)
#
# The sandbox boots basic.target (not the host's enabled services; start what you test)
# with the units masked that would act on the shared host
# rather than on the sandbox: udev (devices), sysctl, kernel modules and binfmt, the
# network's configuration, the console's gettys, the clock, timers and cron (apt, fstrim),
# and tmpfiles, whose boot-time clean-up empties /tmp. /run, /tmp and /var/tmp are the
# sandbox's own tmpfs, so nothing of it is left on the host and it removes nothing there.
set -euo pipefail

state_dir="${XNODE_SYSTEMD_SANDBOX_DIR:-/run/xnode-systemd-sandbox}"
pid_file="$state_dir/pid"

masked_units=(
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service
  systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service
  networking.service systemd-networkd.service systemd-networkd-wait-online.service
  systemd-resolved.service ifupdown-wait-online.service NetworkManager.service
  systemd-timesyncd.service systemd-time-wait-sync.service
  getty@.service serial-getty@.service console-getty.service getty.target
  systemd-firstboot.service systemd-machine-id-commit.service
  systemd-tmpfiles-setup.service systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer
  systemd-binfmt.service systemd-pstore.service systemd-hwdb-update.service
  systemd-sysusers.service ldconfig.service systemd-boot-check-no-failures.service
  timers.target cron.service anacron.service apt-daily.service apt-daily-upgrade.service
)

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file")"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "systemd" ] && echo "$pid"
}

inside() {
  local pid
  pid="$(running_pid)" || { echo "the sandbox is not running (start it first)" >&2; exit 1; }
  nsenter --target "$pid" --mount --pid -- "$@"
}

case "${1:-}" in
  start)
    [ "$(id -u)" -eq 0 ] || { echo "systemd-sandbox: needs root" >&2; exit 1; }
    if pid="$(running_pid)"; then
      echo "$pid"
      exit 0
    fi
    [ -x /lib/systemd/systemd ] || { echo "systemd-sandbox: /lib/systemd/systemd is not installed" >&2; exit 1; }
    mkdir -p "$state_dir"
    # The boot script runs inside the new namespaces: a fresh /run (systemd's own, with the
    # masks) and the container marker, so that systemd skips what only a host does.
    boot="$state_dir/boot.sh"
    {
      echo '#!/bin/sh'
      echo 'set -e'
      echo 'mount -t tmpfs -o mode=0755 tmpfs /run'
      echo 'mount -t tmpfs -o mode=1777 tmpfs /tmp'
      echo 'mount -t tmpfs -o mode=1777 tmpfs /var/tmp'
      echo 'mkdir -p /run/systemd/system'
      for unit in "${masked_units[@]}"; do
        echo "ln -sf /dev/null /run/systemd/system/$unit"
      done
      echo 'export container=xnode-sandbox'
      echo 'exec /lib/systemd/systemd --system --log-target=console --log-level=warning --unit=basic.target'
    } > "$boot"
    chmod 0755 "$boot"
    # setsid: the sandbox outlives this shell; its console output goes to a log file.
    setsid unshare --pid --fork --mount --propagation private "$boot" \
      > "$state_dir/console.log" 2>&1 < /dev/null &
    # The systemd we started is the child of that unshare; wait for it to answer.
    for _ in $(seq 1 300); do
      for pid in $(pgrep -x systemd || true); do
        if [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = "$!" ]; then
          echo "$pid" > "$pid_file"
        fi
      done
      if pid="$(running_pid)"; then
        state="$(nsenter --target "$pid" --mount --pid -- systemctl is-system-running 2>/dev/null || true)"
        case "$state" in
          running|degraded)
            echo "$pid"
            exit 0 ;;
        esac
      fi
      sleep 0.2
    done
    echo "systemd-sandbox: systemd did not finish booting within 60 s (console: $state_dir/console.log)" >&2
    exit 1 ;;
  run)
    shift
    inside "$@" ;;
  stop)
    if pid="$(running_pid)"; then
      nsenter --target "$pid" --mount --pid -- systemctl poweroff --no-block >/dev/null 2>&1 || true
      for _ in $(seq 1 150); do
        [ -d "/proc/$pid" ] || break
        sleep 0.2
      done
      # PID 1 of a PID namespace takes every process of it when it dies.
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file" ;;
  *)
    echo "usage: $0 start | run CMD... | stop" >&2
    exit 2 ;;
esac
