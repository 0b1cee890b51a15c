#!/usr/bin/env bash
# scripts/verify.sh — checks every merchant's ledger with the service binary's `ledger verify` command: each
# transaction sums to zero, cached balances equal their entries, the ledger sequence has no gap, every request has
# exactly one priced transaction. Prints one JSON report per merchant; exits 1 when any merchant has a problem.
#
# Connection: $1, else ConnectionStrings__Billing (the service's own setting).
set -euo pipefail
LAVA_SCRIPT=verify
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
require_dotnet

conn="${1:-${ConnectionStrings__Billing:-}}"
[[ -n "$conn" ]] || die "no connection string: pass it as the first argument or set ConnectionStrings__Billing"

log "building"
dotnet build Lava.Billing/Lava.Billing.csproj -c Release -nologo -clp:ErrorsOnly >&2
ConnectionStrings__Billing="$conn" exec dotnet Lava.Billing/bin/Release/net10.0/Lava.Billing.dll ledger verify
