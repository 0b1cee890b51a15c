#!/usr/bin/env bash
# scripts/run.sh — start the service (the README's "start" command).
#
# Usage: scripts/run.sh [SERVICE ARGS...]      e.g. scripts/run.sh --urls http://127.0.0.1:6000
# Env (all optional):
#   ConnectionStrings__Billing  the PostgreSQL to use; without it a local cluster is started (idempotently) with
#                               its data in .lava/pg (or ${TMPDIR:-/tmp}/lava-pg-<hash> when PostgreSQL's OS user
#                               cannot enter the repository, e.g. one under /root)
#   LAVA_PG_PORT                port of that local cluster, on 127.0.0.1 only (default 5433)
#   LAVA_URLS                   where the service listens (default http://127.0.0.1:5080); --urls in ARGS wins
# Builds Release, applies migrations, creates a demo merchant the first time (kept in .lava/demo-merchant.json)
# and prints its secret key, then becomes the service: Ctrl-C stops it, scripts/stop.sh stops it and the cluster.
set -euo pipefail
LAVA_SCRIPT=run
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet

state="$root/.lava"
mkdir -p "$state"

# ---------- where to listen ----------
listen="${LAVA_URLS:-http://127.0.0.1:5080}"
given_urls=0
for ((i = 1; i <= $#; i++)); do
  case "${!i}" in
    --urls) given_urls=1; j=$((i + 1)); listen="${!j:-}" ;;
    --urls=*) given_urls=1; listen="${!i#--urls=}" ;;
  esac
done
[[ -n "$listen" ]] || die "--urls needs a value, e.g. --urls http://127.0.0.1:5080"
(( given_urls )) || set -- --urls "$listen" "$@"
first_url="${listen%%;*}"
first_url="${first_url%/}"
if [[ "$first_url" =~ ^http://(127\.0\.0\.1|localhost):([0-9]+)$ ]] && ! port_free "${BASH_REMATCH[2]}"; then
  die "port ${BASH_REMATCH[2]} on 127.0.0.1 is in use (is the service already running? scripts/stop.sh stops it; LAVA_URLS picks another address)"
fi
# what a client on this machine calls: a wildcard host is reached at 127.0.0.1
base_url="$(printf '%s' "$first_url" | sed -E 's#^(https?)://(\*|\+|0\.0\.0\.0|\[::\])#\1://127.0.0.1#')/v1/"

# ---------- database ----------
if [[ -n "${ConnectionStrings__Billing:-}" ]]; then
  log "using ConnectionStrings__Billing from the environment (no local cluster)"
  # identifies the database for the demo merchant file, without keeping its password
  target="external:$(printf '%s' "$ConnectionStrings__Billing" | tr ';' '\n' \
    | grep -viE '^[[:space:]]*(password|pwd)[[:space:]]*=' | sha256sum | cut -c1-16)"
else
  # sets ConnectionStrings__Billing, datadir and fresh (1 when the cluster was just created)
  use_local_cluster "$root"
  target="local:$datadir"
  # a new cluster has none of the merchants a file may remember
  if (( fresh )); then rm -f "$state/demo-merchant.json" "$state/demo-merchant.target"; fi
fi

# ---------- build and migrate ----------
log "building Lava.Billing (Release)"
build_release "$root"
log "applying migrations"
dotnet "$dll" migrate >&2 || die "migrate failed (see above)"

# ---------- the demo merchant, made once per database ----------
merchant_file="$state/demo-merchant.json"
target_file="$state/demo-merchant.target"
if [[ -s "$merchant_file" && "$(cat "$target_file" 2>/dev/null)" == "$target" ]]; then
  log "reusing the demo merchant in $merchant_file"
else
  log "creating the demo merchant"
  merchant="$(dotnet "$dll" merchants create --name "Demo merchant")" || die "merchants create failed (see above)"
  [[ "$merchant" == *'"secret_key":"aks_'* ]] || die "merchants create printed no secret key: $merchant"
  (umask 077 && printf '%s\n' "$merchant" >"$merchant_file.tmp" && mv "$merchant_file.tmp" "$merchant_file" \
    && printf '%s\n' "$target" >"$target_file")
fi
merchant="$(cat "$merchant_file")"
merchant_id="$(printf '%s' "$merchant" | sed -n 's/.*"merchant_id":"\([^"]*\)".*/\1/p')"
secret="$(printf '%s' "$merchant" | sed -n 's/.*"secret_key":"\([^"]*\)".*/\1/p')"
[[ -n "$secret" ]] || die "$merchant_file holds no secret_key: delete it and run again"

cat >&2 <<EOF

  ==========================================================================
   Lava Billing: demo merchant $merchant_id
   secret key   $secret
   base URL     $base_url   (keep the trailing slash for the SDK)
   try          curl -H "Authorization: Bearer $secret" ${base_url}secret_keys
   (the key is in $merchant_file; if it is refused, delete that file and run again)
  ==========================================================================

EOF

# ---------- serve ----------
# exec keeps this PID, so scripts/stop.sh can find the service by it
echo "$$" >"$state/service.pid"
log "serving on $listen (Ctrl-C stops the service; scripts/stop.sh stops the service and the local cluster)"
exec dotnet "$dll" "$@"
