#!/usr/bin/env bash
# restore.sh — restore a scripts/backup.sh file into a new database.
#
# Usage: scripts/restore.sh FILE ADMIN_CONNECTION DATABASE [OWNER]
#   ADMIN_CONNECTION  Npgsql string of a superuser on the target cluster (its Database is only used to connect)
#   DATABASE          created here; refused when it exists
#   OWNER             role owning the restored objects as in the dump (default lava; created without login if missing)
# Triggers are disabled while rows are loaded (--disable-triggers, hence the superuser): the ledger's triggers would
# otherwise queue every restored entry for numbering again, and the rows were checked when first written. Run
# `ledger verify` (scripts/verify.sh) on the result before pointing the service at it.
set -euo pipefail
LAVA_SCRIPT=restore
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib.sh"
file="${1:?usage: restore.sh FILE ADMIN_CONNECTION DATABASE [OWNER]}"
admin="${2:?usage: restore.sh FILE ADMIN_CONNECTION DATABASE [OWNER]}"
db="${3:?usage: restore.sh FILE ADMIN_CONNECTION DATABASE [OWNER]}"
owner="${4:-lava}"
[[ -f "$file" ]] || die "no such file: $file"
[[ "$db" =~ ^[a-z_][a-z0-9_]*$ && "$owner" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DATABASE and OWNER must be simple lowercase identifiers"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
pg_env_from_npgsql "$admin"
psql=("$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 --no-password -d "${PGDATABASE:-postgres}")
[[ -z "$("${psql[@]}" -At -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]] || die "database $db exists; restore into a new one"
"${psql[@]}" -v o="$owner" -v d="$db" <<'SQL'
SELECT format('CREATE ROLE %I', :'o') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'o') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'d', :'o') \gexec
SQL
"$pg_bin/pg_restore" --no-password --exit-on-error --disable-triggers --single-transaction -d "$db" "$file"
log "restored $file into $db on $PGHOST:$PGPORT"
