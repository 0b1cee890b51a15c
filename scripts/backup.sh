#!/usr/bin/env bash
# backup.sh — a consistent backup of the billing database with pg_dump (custom format, compressed).
#
# Usage: scripts/backup.sh FILE [CONNECTION]   CONNECTION: an Npgsql string, default ConnectionStrings__Billing
# pg_dump takes one snapshot (REPEATABLE READ), so the file holds every posting whole or not at all while reports go
# on. Run it against the primary or a standby. For point-in-time recovery, use pg_basebackup with WAL archiving instead
# (docs/operations.md, "Backups").
set -euo pipefail
LAVA_SCRIPT=backup
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib.sh"
file="${1:?usage: backup.sh FILE [CONNECTION]}"
conn="${2:-${ConnectionStrings__Billing:-}}"
[[ -n "$conn" ]] || die "no connection string: pass it as the second argument or set ConnectionStrings__Billing"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
[[ -x "$pg_bin/pg_dump" ]] || die "pg_dump not found under /usr/lib/postgresql/*/bin"
pg_env_from_npgsql "$conn"
"$pg_bin/pg_dump" --format=custom --compress=6 --no-password --file="$file.partial" "$PGDATABASE"
mv "$file.partial" "$file"
log "wrote $file ($(du -h "$file" | cut -f1)) from $PGHOST:$PGPORT/$PGDATABASE"
