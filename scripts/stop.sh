#!/usr/bin/env bash
# scripts/stop.sh — stop what scripts/run.sh started: the service, if it still runs, and the local cluster.
#
# Usage: scripts/stop.sh [--purge]
#   --purge  also delete the local cluster's data and the demo merchant (the next run.sh starts from nothing)
set -euo pipefail
LAVA_SCRIPT=stop
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh

purge=()
for a in "$@"; do
  case "$a" in
    --purge) purge=(--purge) ;;
    *) die "usage: scripts/stop.sh [--purge]" ;;
  esac
done
state="$root/.lava"

# ---------- the service: only the PID run.sh recorded, and only while it is still that program ----------
pid="$(cat "$state/service.pid" 2>/dev/null || true)"
if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'Lava\.Billing\.dll'; then
  log "stopping the service (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in {1..100}; do [[ -e "/proc/$pid" ]] || break; sleep 0.1; done
  [[ -e "/proc/$pid" ]] && { log "still running after 10 s; killing it"; kill -9 "$pid" 2>/dev/null || true; }
else
  log "no service started by scripts/run.sh is running"
fi
rm -f "$state/service.pid"

# ---------- the local cluster, wherever run.sh put it ----------
found=0
for dir in "$(local_pg_repo_dir "$root")" "$(local_pg_tmp_dir "$root")"; do
  if [[ -e "$dir/PG_VERSION" ]]; then
    found=1
    scripts/pg-down.sh "$dir" "${purge[@]}"
  fi
done
(( found )) || log "no local cluster to stop"

if (( ${#purge[@]} )); then
  rm -f "$state/demo-merchant.json" "$state/demo-merchant.target" "$state/pg-password"
  log "purged the demo merchant"
fi
