# Shared helpers for scripts/*.sh (sourced, not run).
log() { printf '[%s] %s\n' "${LAVA_SCRIPT:-lava}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# First free TCP port on 127.0.0.1 at or after $1. Callers start below the kernel's ephemeral range (32768-60999 here):
# a port in it can look free and still fail to bind, taken meanwhile as the source port of an outgoing connection.
free_port() {
  local p="$1"
  for ((; p < $1 + 500; p++)); do port_free "$p" && { echo "$p"; return 0; }; done
  return 1
}

require_dotnet() {
  command -v dotnet >/dev/null 2>&1 || die "the .NET SDK (dotnet) is not on PATH; install .NET 10 SDK"
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
}

# ---------- the local cluster of scripts/run.sh and scripts/stop.sh ----------
# Its data lives in .lava/pg in the repository, unless the OS user that runs PostgreSQL (root cannot) cannot reach
# it, e.g. a repository under /root (mode 700): then in ${TMPDIR:-/tmp}/lava-pg-<hash of the repository path>.
local_pg_repo_dir() { echo "$1/.lava/pg"; }
local_pg_tmp_dir() {
  local hash
  hash="$(printf '%s' "$1" | sha256sum | cut -c1-12)"
  echo "${TMPDIR:-/tmp}/lava-pg-$hash"
}

# The OS user pg-up.sh runs PostgreSQL as: ourselves, or (as root) PGUP_OS_USER / postgres / pgci.
local_pg_os_user() {
  if [[ $EUID -ne 0 ]]; then id -un
  elif [[ -n "${PGUP_OS_USER:-}" ]]; then echo "$PGUP_OS_USER"
  elif id -u postgres >/dev/null 2>&1; then echo postgres
  else echo pgci; fi
}

# Can the PostgreSQL OS user enter directory $1? Asked as that user when it exists; otherwise (not created yet:
# pg-up.sh installs or creates it) every directory on the path must let others through.
pg_user_can_enter() {
  local dir="$1" user d
  user="$(local_pg_os_user)"
  [[ $EUID -ne 0 ]] && return 0
  if id -u "$user" >/dev/null 2>&1; then
    (cd / && runuser -u "$user" -- test -x "$dir") 2>/dev/null
    return
  fi
  d="$dir"
  while [[ -n "$d" && "$d" != / ]]; do
    [[ "$(stat -c %A "$d" 2>/dev/null)" =~ ^d........[xt]$ ]] || return 1
    d="$(dirname "$d")"
  done
}

# Exports PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD from an Npgsql connection string (Host=a;Port=p;…), so libpq
# tools (pg_dump, pg_restore, psql) reach the same database. A multi-host Host list keeps only its first host.
pg_env_from_npgsql() {
  local part key value
  IFS=';' read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    key="${part%%=*}" value="${part#*=}"
    case "${key,,}" in
      host|server) value="${value%%,*}"; if [[ "$value" == *:* ]]; then export PGPORT="${value##*:}"; value="${value%:*}"; fi; export PGHOST="$value" ;;
      port) export PGPORT="$value" ;;
      database|db) export PGDATABASE="$value" ;;
      username|"user id"|userid|user) export PGUSER="$value" ;;
      password) export PGPASSWORD="$value" ;;
    esac
  done
}
