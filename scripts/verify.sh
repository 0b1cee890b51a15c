#!/usr/bin/env bash
# scripts/verify.sh — checks every merchant's ledger with the service binary's `ledger verify` command: each
# transaction sums to zero, cached balances equal their entries, the ledger sequence has no gap, every request has
# exactly one priced transaction. Prints one JSON report per merchant; exits 1 when any merchant has a problem.
#
# Connection: $1, else ConnectionStrings__Billing (the service's own setting), else the local cluster of
# scripts/run.sh (started when it is down).
set -euo pipefail
LAVA_SCRIPT=verify
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet

if [[ -n "${1:-}" ]]; then export ConnectionStrings__Billing="$1"; fi
use_configured_or_local_database "$root"
build_release "$root"
exec dotnet "$dll" ledger verify
