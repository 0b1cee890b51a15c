#!/usr/bin/env bash
# scripts/merchant.sh — make merchants and secret keys from a shell, without the API.
#
# Usage:
#   scripts/merchant.sh create NAME                         a merchant with one full secret key
#   scripts/merchant.sh key MERCHANT [--read-only] [--name KEYNAME]
#                                                           another key for a merchant (its id, or its name)
# Prints one JSON line on stdout, e.g. {"merchant_id":"mer_...","secret_key":"aks_test_..."}; the secret is shown
# only here. Database: ConnectionStrings__Billing, else the local cluster of scripts/run.sh (started when it is down).
# With the service running, keys can also be made over HTTP: POST /v1/secret_keys {"name":..., "scope":"read_only"}.
set -euo pipefail
LAVA_SCRIPT=merchant
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh

usage() { die "usage: scripts/merchant.sh create NAME | scripts/merchant.sh key MERCHANT [--read-only] [--name KEYNAME]"; }
[[ $# -ge 2 ]] || usage
case "$1" in
  create) [[ $# -eq 2 ]] || usage; command=(merchants create --name "$2") ;;
  key) command=(merchants key --merchant "$2" "${@:3}") ;;
  *) usage ;;
esac

require_dotnet
use_configured_or_local_database "$root"
build_release "$root"
exec dotnet "$dll" "${command[@]}"
