#!/usr/bin/env bash
# ha-up.sh — start a local high-availability PostgreSQL: one etcd and two PostgreSQL 15 nodes managed by Patroni, with
# synchronous replication (an acknowledged commit is on both nodes), all on 127.0.0.1. Idempotent.
#
# Usage: scripts/ha-up.sh [DIR]          DIR default: ${TMPDIR:-/tmp}/lava-ha-$HA_PORT_BASE
# Env:   HA_PORT_BASE=25700   ports: etcd client +0, etcd peer +1, PostgreSQL +2 and +3, Patroni REST +4 and +5
#        HA_DB=lava HA_USER=lava HA_PASSWORD=lava_pw HA_ADMIN_PASSWORD=adminpw
# stdout: exactly one line, the service's connection string (both hosts, Target Session Attributes=primary).
# Needs Debian's patroni and etcd-server (installed with apt-get when missing and run as root). As root, everything runs
# as the postgres OS user (PostgreSQL refuses root). scripts/ha-down.sh stops it; scripts/chaos-ha.sh kills primaries.
set -euo pipefail

BASE="${HA_PORT_BASE:-25700}"
DIR="${1:-${TMPDIR:-/tmp}/lava-ha-$BASE}"
DB="${HA_DB:-lava}" APPUSER="${HA_USER:-lava}" APPPASS="${HA_PASSWORD:-lava_pw}" ADMINPASS="${HA_ADMIN_PASSWORD:-adminpw}"
ETCD=$BASE ETCD_PEER=$((BASE + 1)) PG1=$((BASE + 2)) PG2=$((BASE + 3)) REST1=$((BASE + 4)) REST2=$((BASE + 5))

log() { printf '[ha-up] %s\n' "$*" >&2; }
die() { printf '[ha-up] ERROR: %s\n' "$*" >&2; exit 1; }
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac

if ! command -v patroni >/dev/null || ! command -v etcd >/dev/null; then
  [[ $EUID -eq 0 ]] || die "patroni and etcd are missing and this is not root (apt-get install patroni etcd-server)"
  log "installing patroni and etcd-server with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends patroni etcd-server python3-etcd >&2
fi
BINDIR="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
[[ -x "$BINDIR/postgres" ]] || die "PostgreSQL server binaries not found (apt-get install postgresql-15)"

if [[ $EUID -eq 0 ]]; then
  OSUSER=postgres
  id -u "$OSUSER" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir / --shell /usr/sbin/nologin "$OSUSER"
  as_pg() { (cd / && HOME=/ runuser -u "$OSUSER" -- "$@"); }
else
  OSUSER="$(id -un)"
  as_pg() { (cd / && "$@"); }
fi
mkdir -p "$DIR"
[[ $EUID -eq 0 ]] && chown "$OSUSER:" "$DIR"
chmod 700 "$DIR"
as_pg test -w "$DIR" || die "OS user $OSUSER cannot write $DIR (a parent such as /root is private?): use a directory under /tmp"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
# Started in their own session, so they outlive this script and ha-down.sh can stop each by its pid file.
start_bg() {
  local pidfile="$1" logfile="$2"; shift 2
  # The pid written is the program's own (exec), not that of runuser or this subshell.
  as_pg setsid sh -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 < /dev/null &
  for ((i = 0; i < 50; i++)); do [[ -s "$pidfile" ]] && return 0; sleep 0.1; done
  die "could not start $1"
}

if alive "$DIR/etcd.pid"; then
  log "etcd already running"
else
  log "starting etcd on 127.0.0.1:$ETCD"
  start_bg "$DIR/etcd.pid" "$DIR/etcd.log" etcd --name lava-ha --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD" --advertise-client-urls "http://127.0.0.1:$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "lava-ha=http://127.0.0.1:$ETCD_PEER" --enable-v2=true
fi
for ((i = 0; i < 100; i++)); do curl -fsS "http://127.0.0.1:$ETCD/health" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$ETCD/health" >/dev/null || { tail -n 20 "$DIR/etcd.log" >&2; die "etcd did not start"; }

node_config() {
  local name="$1" pg="$2" rest="$3"
  as_pg tee "$DIR/$name.yml" >/dev/null <<EOF
scope: lava
namespace: /lava-ha-$BASE/
name: $name
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$ETCD
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    # An acknowledged commit is on the synchronous standby, and only that standby may be promoted: no acknowledged
    # report is lost. Not strict: with the standby gone, the primary goes on alone rather than stop taking reports.
    synchronous_mode: true
    synchronous_mode_strict: false
    # A crashed primary is not restarted in place first: the standby takes over at once.
    primary_start_timeout: 0
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        max_connections: 200
        shared_buffers: 128MB
        fsync: "on"
        synchronous_commit: "on"
  initdb:
    - encoding: UTF8
    - locale: C
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $DIR/$name
  bin_dir: $BINDIR
  pgpass: $DIR/$name.pgpass
  authentication:
    superuser: {username: postgres, password: $ADMINPASS}
    replication: {username: replicator, password: replicator_pw}
    rewind: {username: postgres, password: $ADMINPASS}
  parameters:
    unix_socket_directories: '$DIR'
EOF
}
for n in 1 2; do
  pg=$((BASE + 1 + n)) rest=$((BASE + 3 + n))
  if alive "$DIR/node$n.pid"; then log "node$n already running"; continue; fi
  node_config "node$n" "$pg" "$rest"
  log "starting Patroni node$n (PostgreSQL 127.0.0.1:$pg, REST 127.0.0.1:$rest)"
  start_bg "$DIR/node$n.pid" "$DIR/node$n.log" patroni "$DIR/node$n.yml"
  # The first node bootstraps the cluster; the second then copies it (pg_basebackup) rather than racing it.
  if [[ $n == 1 ]]; then
    for ((i = 0; i < 300; i++)); do curl -fsS "http://127.0.0.1:$rest/primary" >/dev/null 2>&1 && break; sleep 0.2; done
  fi
done

leader_port() {
  local rest
  for rest in "$REST1" "$REST2"; do
    if curl -fsS "http://127.0.0.1:$rest/primary" >/dev/null 2>&1; then
      [[ $rest == "$REST1" ]] && echo "$PG1" || echo "$PG2"; return 0
    fi
  done
  return 1
}
for ((i = 0; i < 600; i++)); do
  # Ready: a primary, and a standby streaming synchronously.
  if port="$(leader_port)" && curl -fsS "http://127.0.0.1:$REST1/health" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$REST2/health" >/dev/null 2>&1 \
     && [[ "$(as_pg "$BINDIR/psql" -XAtq -h "$DIR" -p "$port" -U postgres -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" 2>/dev/null)" == 1 ]]; then
    break
  fi
  sleep 0.2
done
port="$(leader_port)" || { tail -n 30 "$DIR"/node*.log >&2; die "no primary elected"; }
[[ "$(as_pg "$BINDIR/psql" -XAtq -h "$DIR" -p "$port" -U postgres -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" == 1 ]] \
  || { tail -n 30 "$DIR"/node*.log >&2; die "the standby is not streaming synchronously"; }

as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U postgres -d postgres -v u="$APPUSER" -v p="$APPPASS" -v d="$DB" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'u') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'u', :'p') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'d', :'u') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'d') \gexec
SQL
log "ready: primary on 127.0.0.1:$port; logs in $DIR"
printf 'Host=127.0.0.1:%s,127.0.0.1:%s;Database=%s;Username=%s;Password=%s;Target Session Attributes=primary;Host Recheck Seconds=2\n' \
  "$PG1" "$PG2" "$DB" "$APPUSER" "$APPPASS"
