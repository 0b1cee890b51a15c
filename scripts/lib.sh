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

# Starts the local cluster of scripts/run.sh, or finds it running (pg-up.sh is idempotent), on
# 127.0.0.1:${LAVA_PG_PORT:-5433}, and exports ConnectionStrings__Billing for it. $1: the repository root.
# Sets datadir (where the cluster's data is) and fresh (1 when the cluster was created just now).
use_local_cluster() {
  local root="$1" state="$1/.lava" pg_port repo_dir tmp_dir pw_file conn
  mkdir -p "$state"
  # PostgreSQL's OS user must pass through .lava to reach .lava/pg; it cannot list it.
  if [[ $EUID -eq 0 ]]; then chmod go+x "$state"; fi
  pg_port="${LAVA_PG_PORT:-5433}"
  [[ "$pg_port" =~ ^[0-9]+$ ]] || die "LAVA_PG_PORT must be a port number, not '$pg_port'"
  repo_dir="$(local_pg_repo_dir "$root")"
  tmp_dir="$(local_pg_tmp_dir "$root")"
  if [[ -d "$repo_dir" && ! -r "$repo_dir" && $EUID -ne 0 ]]; then
    die "$repo_dir belongs to $(stat -c %U "$repo_dir"), not to you: run as root, or as that user"
  fi
  if [[ -e "$repo_dir/PG_VERSION" ]]; then
    datadir="$repo_dir"
  elif [[ -e "$tmp_dir/PG_VERSION" ]]; then
    datadir="$tmp_dir"
    log "using the local cluster kept in $tmp_dir (the repository was not reachable by PostgreSQL when it was made)"
  elif pg_user_can_enter "$state"; then
    datadir="$repo_dir"
  else
    datadir="$tmp_dir"
    log "PostgreSQL's OS user ($(local_pg_os_user)) cannot enter $state (a parent directory such as /root is private):"
    log "keeping the cluster's data in $tmp_dir instead"
  fi

  pw_file="$state/pg-password"
  if [[ ! -s "$pw_file" ]]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$pw_file")
  fi
  fresh=0
  [[ -e "$datadir/PG_VERSION" ]] || fresh=1
  # fsync on: unlike the test clusters, this one keeps a developer's data across restarts
  if ! conn="$(PGUP_DB=lava PGUP_USER=lava PGUP_PASSWORD="$(cat "$pw_file")" PGUP_FSYNC=on \
    "$root/scripts/pg-up.sh" "$datadir" "$pg_port")"; then
    die "the local PostgreSQL did not start (see above). LAVA_PG_PORT picks another port; scripts/stop.sh --purge starts over"
  fi
  export ConnectionStrings__Billing="$conn"
}

# ConnectionStrings__Billing from the environment, else the local cluster's (started when it is down).
use_configured_or_local_database() {
  if [[ -n "${ConnectionStrings__Billing:-}" ]]; then
    log "using ConnectionStrings__Billing from the environment"
  else
    use_local_cluster "$1"
    log "using the local cluster of scripts/run.sh ($datadir, port ${LAVA_PG_PORT:-5433})"
  fi
}

# Posts N usage reports on meter "tok" in one batch call (one request, not N: the test machines are shared) and dies
# unless every one was created; report k (1..N) is request PREFIXk with k × TOKENS input tokens.
# Usage: post_reports URL SECRET_KEY CUSTOMER_ID PREFIX N TOKENS COST   (scripts/backup-test.sh, scripts/replica-test.sh)
post_reports() {
  local body created
  body="$(node -e 'const [c, p, n, t, cost] = process.argv.slice(1); console.log(JSON.stringify({ requests: Array.from({ length: +n },
    (_, k) => ({ request_id: `${p}${k + 1}`, customer_id: c, meter_slug: "tok", input_tokens: (k + 1) * t, cost })) }))' \
    "$3" "$4" "$5" "$6" "$7")"
  created="$(curl -fsS --max-time 60 -H "Authorization: Bearer $2" -H 'Content-Type: application/json' -d "$body" "$1/v1/requests/batch" |
    node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => console.log(JSON.parse(s).data.filter((o) => o.status === "created").length))')"
  [[ "$created" == "$5" ]] || die "the batch created $created of $5 reports"
}

# Builds the service in Release (quietly; a no-op when nothing changed) and sets dll to its path.
# LAVA_BUILD_CONFIGURATION=Debug uses the Debug build instead (scripts/getting-started.sh, after scripts/test.sh built it).
# LAVA_SKIP_BUILD=1 uses that build as it is when it exists (the guide's runner: one build, not one per command).
build_release() {
  local configuration="${LAVA_BUILD_CONFIGURATION:-Release}"
  dll="$1/Lava.Billing/bin/$configuration/net10.0/Lava.Billing.dll"
  [[ "${LAVA_SKIP_BUILD:-}" == 1 && -f "$dll" ]] && return 0
  dotnet build "$1/Lava.Billing/Lava.Billing.csproj" -c "$configuration" -nologo -v:quiet "-clp:ErrorsOnly;NoSummary" >&2 \
    || die "the build failed (see above)"
  dll="$1/Lava.Billing/bin/$configuration/net10.0/Lava.Billing.dll"
  [[ -f "$dll" ]] || die "the build produced no $dll"
}
