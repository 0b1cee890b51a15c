#!/usr/bin/env bash
# pg-up.sh — start a local PostgreSQL cluster (idempotent).
#
# Usage: pg-up.sh [DATADIR] [PORT]
#   DATADIR  default: ${TMPDIR:-/tmp}/pg-ci-$PORT  (must be reachable by the OS user that runs postgres)
#   PORT     default: 55432 (bound to 127.0.0.1 only)
# Env (optional):
#   PGUP_DB=appdb  PGUP_USER=app  PGUP_PASSWORD=app_pw
#   PGUP_FSYNC=off|on   (default off: throwaway data, crash safety not needed)
#   PGUP_OS_USER=<name> (OS user owning the cluster when run as root; default: postgres if it exists, else pgci, created)
#   PG_BINDIR=<dir>     (skip bin-dir discovery)
#   PGUP_TIMEOUT=60     (seconds to wait for readiness)
#   PGUP_SHARED_BUFFERS=128MB (PostgreSQL's own page cache)
#   PGUP_ADMIN_PASSWORD=<pw> (also give the postgres superuser this password, for TCP logins by tests)
# stdout: exactly one line, the Npgsql connection string. Everything else goes to stderr.
#   e.g.  CONN="$(./pg-up.sh /tmp/pg-ci 55432)"; export ConnectionStrings__Default="$CONN"
#   (not `export X="$(./pg-up.sh)"` in one line: that masks a pg-up failure from `set -e`)
# Settings in pgup.conf are rewritten on each (re)start; a re-run against a running cluster changes nothing.
set -euo pipefail

PORT="${2:-${PGUP_PORT:-55432}}"
DATADIR="${1:-${PGUP_DATADIR:-${TMPDIR:-/tmp}/pg-ci-$PORT}}"
DB="${PGUP_DB:-appdb}"
APPUSER="${PGUP_USER:-app}"
APPPASS="${PGUP_PASSWORD:-app_pw}"
FSYNC="${PGUP_FSYNC:-off}"
TIMEOUT="${PGUP_TIMEOUT:-60}"
SHARED_BUFFERS="${PGUP_SHARED_BUFFERS:-128MB}"

log() { printf '[pg-up] %s\n' "$*" >&2; }
die() { printf '[pg-up] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "port must be numeric: $PORT"
[[ "$FSYNC" == on || "$FSYNC" == off ]] || die "PGUP_FSYNC must be on|off"
[[ "$SHARED_BUFFERS" =~ ^[0-9]+(kB|MB|GB)$ ]] || die "PGUP_SHARED_BUFFERS must be a size such as 128MB or 1GB"
[[ "$APPUSER" =~ ^[a-z_][a-z0-9_]*$ && "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "PGUP_USER/PGUP_DB must be simple lowercase identifiers"
case "$DATADIR" in /*) ;; *) DATADIR="$PWD/$DATADIR" ;; esac
DATADIR="${DATADIR%/}"

# ---------- 1. locate PostgreSQL server binaries ----------
has_server() { [[ -n "${1:-}" && -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]; }
find_bindir() {
  local d
  if [[ -n "${PG_BINDIR:-}" ]] && has_server "$PG_BINDIR"; then echo "$PG_BINDIR"; return 0; fi
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    if has_server "$d"; then echo "$d"; return 0; fi   # libpq-dev-only pg_config says /usr/bin: no initdb there
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if has_server "$d"; then echo "$d"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then
    d="$(dirname "$(readlink -f "$(command -v initdb)")")"
    if has_server "$d"; then echo "$d"; return 0; fi
  fi
  return 1
}
if ! BINDIR="$(find_bindir)"; then
  [[ $EUID -eq 0 ]] || die "PostgreSQL server binaries not found and not root (cannot apt-get install)"
  log "PostgreSQL server not found; installing via apt-get (no main cluster will be created)"
  mkdir -p /etc/postgresql-common
  [[ -f /etc/postgresql-common/createcluster.conf ]] || echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >&2
  BINDIR="$(find_bindir)" || die "apt-get install postgresql did not provide initdb/pg_ctl"
fi
log "using $BINDIR ($("$BINDIR/postgres" --version))"

# ---------- 2. OS user to run as (postgres refuses to run as root) ----------
if [[ $EUID -eq 0 ]]; then
  OSUSER="${PGUP_OS_USER:-}"
  if [[ -z "$OSUSER" ]]; then
    if [[ -e "$DATADIR/PG_VERSION" ]]; then OSUSER="$(stat -c %U "$DATADIR")"   # re-run: keep existing owner
    elif id -u postgres >/dev/null 2>&1; then OSUSER=postgres
    else OSUSER=pgci; fi
  fi
  if ! id -u "$OSUSER" >/dev/null 2>&1; then
    log "creating OS user $OSUSER"
    useradd --system --user-group --no-create-home --home-dir / --shell /usr/sbin/nologin "$OSUSER" \
      || adduser --system --group --no-create-home --home / "$OSUSER" >&2
  fi
  # cd / : avoids "could not change directory to /root/...: Permission denied"; HOME=/ avoids ~/.pgpass, ~/.psqlrc lookups in /root
  as_pg() { (cd / && HOME=/ runuser -u "$OSUSER" -- "$@"); }
else
  OSUSER="$(id -un)"
  as_pg() { (cd / && "$@"); }
fi

# Unix socket lives in the data dir (sun_path limit is 107 bytes) unless the path is too long.
if (( ${#DATADIR} <= 90 )); then SOCKDIR="$DATADIR"; else SOCKDIR="${TMPDIR:-/tmp}/.pgup-sock-$PORT"; fi
PSQL=(as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres)

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
# pid from postmaster.pid is a live (non-zombie) postgres process?
pid_is_postgres() {
  local pid="$1" st
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  st="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
  [[ "$st" != Z ]] && grep -qa postgres "/proc/$pid/cmdline" 2>/dev/null
}
is_running() {
  local pid
  pid="$(head -n1 "$DATADIR/postmaster.pid" 2>/dev/null || true)"
  pid_is_postgres "$pid" && as_pg "$BINDIR/pg_ctl" status -D "$DATADIR" >/dev/null 2>&1
}
# after a crash / kill -9 the old postmaster may linger as a zombie (PID 1 reaps lazily) or its PID may be reused
clear_stale_pidfile() {
  local pid i
  pid="$(head -n1 "$DATADIR/postmaster.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] || return 0
  for ((i = 0; i < 100; i++)); do
    [[ -e "/proc/$pid" ]] || return 0      # PID gone: postgres itself discards the stale lock file
    [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" == Z ]] || break   # PID reused by another program
    sleep 0.1                              # zombie: wait for PID 1 to reap it
  done
  log "removing stale postmaster.pid (PID $pid is a zombie or not postgres)"
  rm -f "$DATADIR/postmaster.pid"
}

# fail fast if someone else holds the port
if ! { [[ -e "$DATADIR/PG_VERSION" ]] && is_running; } && port_busy; then
  die "port $PORT on 127.0.0.1 is already in use by another process (pick another port)"
fi

# ---------- 3. initdb (only if needed) ----------
if [[ -e "$DATADIR/PG_VERSION" ]]; then
  log "cluster already initialised in $DATADIR"
else
  if [[ -d "$DATADIR" && -n "$(ls -A "$DATADIR" 2>/dev/null)" ]]; then
    die "$DATADIR exists, is not empty and is not a cluster; remove it or pick another directory"
  fi
  mkdir -p "$DATADIR"
  [[ $EUID -eq 0 ]] && chown "$OSUSER:" "$DATADIR"
  chmod 700 "$DATADIR"
  as_pg test -w "$DATADIR" || die "OS user '$OSUSER' cannot reach $DATADIR (a parent dir such as /root is mode 700?). Use a dir under /tmp."
  log "initdb $DATADIR (owner $OSUSER)"
  # trust on the unix socket (dir is 0700 = owner only); scram on TCP; --no-sync: skip fsync of initdb output
  as_pg "$BINDIR/initdb" -D "$DATADIR" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync --no-instructions >/dev/null
  echo "include_if_exists = 'pgup.conf'" | as_pg tee -a "$DATADIR/postgresql.conf" >/dev/null
fi

# ---------- 4. start (only if not running) ----------
if is_running; then
  running_port="$(sed -n 4p "$DATADIR/postmaster.pid" 2>/dev/null || true)"
  [[ "$running_port" == "$PORT" ]] || die "cluster in $DATADIR already running on port $running_port, not $PORT"
  log "already running (pid $(head -n1 "$DATADIR/postmaster.pid")) on 127.0.0.1:$PORT"
else
  if [[ "$SOCKDIR" != "$DATADIR" ]]; then
    mkdir -p "$SOCKDIR"; [[ $EUID -eq 0 ]] && chown "$OSUSER:" "$SOCKDIR"; chmod 700 "$SOCKDIR"
  fi
  as_pg tee "$DATADIR/pgup.conf" >/dev/null <<EOF
# written by pg-up.sh on every start
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '${SOCKDIR//\'/\'\'}'
fsync = $FSYNC
synchronous_commit = $FSYNC
full_page_writes = $FSYNC
max_connections = 200
shared_buffers = $SHARED_BUFFERS
max_wal_size = 1GB
logging_collector = off
log_min_messages = warning
EOF
  clear_stale_pidfile
  log "starting on 127.0.0.1:$PORT (fsync=$FSYNC), log: $DATADIR/server.log"
  if ! as_pg "$BINDIR/pg_ctl" start -D "$DATADIR" -l "$DATADIR/server.log" -w -t "$TIMEOUT" -s >&2; then
    tail -n 30 "$DATADIR/server.log" >&2 || true
    die "pg_ctl start failed"
  fi
fi

# ---------- 5. wait until it accepts TCP connections ----------
for ((i = 0; i < TIMEOUT * 10; i++)); do
  "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 1 && break
  sleep 0.1
done
"$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" || { tail -n 30 "$DATADIR/server.log" >&2; die "server not ready after ${TIMEOUT}s"; }

# ---------- 6. role + database (idempotent) ----------
"${PSQL[@]}" -v u="$APPUSER" -v p="$APPPASS" -v d="$DB" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'u') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'u', :'p') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'d', :'u') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'d') \gexec
SQL
if [[ -n "${PGUP_ADMIN_PASSWORD:-}" ]]; then
  "${PSQL[@]}" -v p="$PGUP_ADMIN_PASSWORD" >&2 <<'SQL'
SELECT format('ALTER ROLE postgres WITH PASSWORD %L', :'p') \gexec
SQL
fi

log "ready: postgresql://$APPUSER:***@127.0.0.1:$PORT/$DB"
printf 'Host=127.0.0.1;Port=%s;Database=%s;Username=%s;Password=%s\n' "$PORT" "$DB" "$APPUSER" "$APPPASS"
