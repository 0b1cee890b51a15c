# Shared helpers for scripts/*.sh (sourced, not run).
log() { printf '[%s] %s\n' "${LAVA_SCRIPT:-lava}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# First free TCP port on 127.0.0.1 at or after $1.
free_port() {
  local p="$1"
  for ((; p < $1 + 500; p++)); do port_free "$p" && { echo "$p"; return 0; }; done
  return 1
}

require_dotnet() {
  command -v dotnet >/dev/null 2>&1 || die "the .NET SDK (dotnet) is not on PATH; install .NET 10 SDK"
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
}
