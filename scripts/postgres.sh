# shellcheck shell=bash
# Sourced by scripts/dev, scripts/test and bench/run: makes DATABASE_URL point at a Postgres.
#
#   DATABASE_URL set     -> used as is.
#   otherwise            -> a project-local cluster started with the system's initdb/pg_ctl
#                           (as the `postgres` user when we are root: postgres refuses root).
#
# pg_local_start DIR PORT  starts (initialising on first use) a cluster in DIR on 127.0.0.1:PORT
# pg_local_running DIR     whether it runs
# pg_local_stop DIR        stops it

pg_bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  if command -v pg_ctl >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v pg_ctl)")"; return 0; fi
  return 1
}

pg_ensure_binaries() {
  if pg_bin_dir >/dev/null; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres: server binaries not found; installing Debian's 'postgresql' package" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || true
  fi
  if ! pg_bin_dir >/dev/null; then
    echo "postgres: initdb/pg_ctl not found. Install the PostgreSQL server (Debian/Ubuntu: 'apt-get install postgresql'; macOS: 'brew install postgresql') or set DATABASE_URL." >&2
    return 1
  fi
}

# Runs a command as the cluster owner.
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_local_start() {
  local dir=$1 port=$2 bin
  pg_ensure_binaries || return 1
  bin=$(pg_bin_dir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown postgres "$dir"
    chmod 700 "$dir"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
      || { echo "postgres: initdb failed, see $dir/initdb.log" >&2; cat "$dir/initdb.log" >&2; return 1; }
  fi
  if ! pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 ${PG_EXTRA_OPTS:-}" start >/dev/null \
      || { echo "postgres: server did not start, see $dir/server.log" >&2; tail -20 "$dir/server.log" >&2; return 1; }
  fi
}

# Whether the cluster in DIR is running.
pg_local_running() {
  local dir=$1 bin
  bin=$(pg_bin_dir) || return 1
  [ -f "$dir/data/PG_VERSION" ] || return 1
  pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

pg_local_stop() {
  local dir=$1 bin
  bin=$(pg_bin_dir) || return 0
  [ -f "$dir/data/PG_VERSION" ] || return 0
  pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Creates database $2 on the server of URL $1 if missing (needs psql from the same install).
pg_create_db() {
  local admin_url=$1 name=$2 bin
  bin=$(pg_bin_dir)
  "$bin/psql" "$admin_url" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1 \
    || "$bin/psql" "$admin_url" -qc "CREATE DATABASE \"$name\"" >/dev/null
}
