#!/usr/bin/env bash
# ha-down.sh — stop what scripts/ha-up.sh started (both Patroni nodes with their PostgreSQL, then etcd).
# Usage: scripts/ha-down.sh [DIR] [--purge]     DIR default: ${TMPDIR:-/tmp}/lava-ha-$HA_PORT_BASE; --purge deletes DIR
set -euo pipefail
BASE="${HA_PORT_BASE:-25700}"
DIR="${TMPDIR:-/tmp}/lava-ha-$BASE" PURGE=0
for a in "$@"; do case "$a" in --purge) PURGE=1 ;; *) DIR="$a" ;; esac; done
log() { printf '[ha-down] %s\n' "$*" >&2; }

stop() {
  local pidfile="$1" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $(basename "$pidfile" .pid) (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300 && $(kill -0 "$pid" 2>/dev/null && echo 1 || echo 0); i++)); do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
# Patroni stops its PostgreSQL on SIGTERM; a postmaster left behind (Patroni killed hard) is stopped from its pid file.
stop "$DIR/node1.pid"; stop "$DIR/node2.pid"
for n in 1 2; do
  pid="$(head -n1 "$DIR/node$n/postmaster.pid" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    log "stopping postmaster of node$n (pid $pid)"; kill -INT "$pid" || true
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
done
stop "$DIR/etcd.pid"
if (( PURGE )); then rm -rf "$DIR"; log "removed $DIR"; fi
