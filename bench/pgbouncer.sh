# shellcheck shell=bash
# Sourced by bench/run: a real PgBouncer (Debian's package, 1.18 or later) in
# `pool_mode = transaction` in front of the benchmark's database, for the scale-out pass through
# the pooler. The same configuration as tests/src/pgbouncer.rs, with the server pool size from
# BENCH_POOLER_POOL_SIZE.
#
# pgbouncer_ensure                  finds (as root with apt-get: installs) the binary
# pgbouncer_start DIR URL           starts one on a free port in front of the server of URL (a
#                                   database URL); sets PGBOUNCER_PID and PGBOUNCER_URL, the
#                                   same database through the pooler
# pgbouncer_watch DIR DB            polls its admin console until killed (one line per poll)
# pgbouncer_peaks DIR               the peaks of those polls as JSON fields
#
# The caller stops it (PGBOUNCER_PID) like its other processes, also on exit.

PGBOUNCER_BIN=
PGBOUNCER_PID=
PGBOUNCER_PORT=
PGBOUNCER_URL=

pgbouncer_ensure() {
  local b
  for b in "${PGBOUNCER_BIN_OVERRIDE:-}" /usr/sbin/pgbouncer "$(command -v pgbouncer 2>/dev/null || true)"; do
    [ -n "$b" ] && [ -x "$b" ] && { PGBOUNCER_BIN=$b; return 0; }
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing Debian's pgbouncer for the scale-out pass through the pooler" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2 || true
    # Only the binary is needed: the Debian service stays off.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi
    [ -x /usr/sbin/pgbouncer ] && { PGBOUNCER_BIN=/usr/sbin/pgbouncer; return 0; }
  fi
  echo "bench: no pgbouncer (apt-get install pgbouncer); the pass through the pooler is skipped" >&2
  return 1
}

# Host, port, user and password of a postgres:// URL, one a line (host 127.0.0.1 and port 5432
# when it names none). Percent-encoded user names and passwords are passed on as written.
url_parts() {
  local rest=${1#*://} auth="" host port
  rest=${rest%%/*}
  rest=${rest%%\?*}
  case $rest in *@*) auth=${rest%@*}; rest=${rest##*@} ;; esac
  host=${rest%:*}
  port=5432
  [ "$host" != "$rest" ] && port=${rest##*:}
  printf '%s\n%s\n%s\n%s\n' "${host:-127.0.0.1}" "$port" "${auth%%:*}" \
    "$(case $auth in *:*) echo "${auth#*:}" ;; esac)"
}

pgbouncer_start() { # DIR URL
  local dir=$1 host port user password db=${2##*/}
  db=${db%%\?*}
  { read -r host; read -r port; read -r user; read -r password; } < <(url_parts "$2")
  user=${user:-$(id -un)} # what libpq assumes for a URL without a user
  mkdir -p "$dir"
  chmod 755 "$dir" # PgBouncer runs as postgres when we are root
  PGBOUNCER_PORT=$(pick_port)
  printf '"%s" "%s"\n' "$user" "$password" >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$host port=$port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $user
pool_mode = transaction
max_client_conn = 1000
default_pool_size = $POOLER_POOL_SIZE
ignore_startup_parameters = extra_float_digits,application_name,options
# the admin console is polled twice a second: keep its logins out of the log
log_connections = 0
log_disconnections = 0
INI
  local as_root=()
  [ "$(id -u)" = 0 ] && as_root=(-u postgres) # PgBouncer refuses to run as root
  "$PGBOUNCER_BIN" "${as_root[@]}" "$dir/pgbouncer.ini" >"$dir/pgbouncer.log" 2>&1 &
  PGBOUNCER_PID=$!
  PIDS+=("$PGBOUNCER_PID")
  PGBOUNCER_URL="postgres://$user@127.0.0.1:$PGBOUNCER_PORT/$db"
  for _ in $(seq 200); do
    ! port_free "$PGBOUNCER_PORT" && return 0
    kill -0 "$PGBOUNCER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench: pgbouncer did not listen on $PGBOUNCER_PORT" >&2
  cat "$dir/pgbouncer.log" >&2
  return 1
}

# Every half second, SHOW POOLS for DB: "clients waiting servers" (clients = cl_active +
# cl_waiting; servers = every server connection, busy, idle or logging in), read by column
# name, as the columns differ between PgBouncer versions.
pgbouncer_watch() { # DIR DB
  local admin
  admin="postgres://$(sed -n 1p "$1/userlist.txt" | cut -d'"' -f2)@127.0.0.1:$PGBOUNCER_PORT/pgbouncer"
  while :; do
    "$PGBIN/psql" "$admin" -qAX -P footer=off -c "SHOW POOLS" 2>/dev/null | awk -F'|' -v db="$2" '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      $col["database"] == db {
        c += $col["cl_active"] + $col["cl_waiting"]; w += $col["cl_waiting"]
        s += $col["sv_active"] + $col["sv_idle"] + $col["sv_used"] + $col["sv_tested"] + $col["sv_login"]
      }
      END { print c + 0, w + 0, s + 0 }' >>"$1/pools.txt"
    sleep 0.5
  done
}

pgbouncer_peaks() { # DIR -> {"pooler_peak_clients":…,"pooler_peak_waiting":…,"pooler_peak_servers":…}
  [ -s "$1/pools.txt" ] || { echo '{}'; return 0; }
  awk '{ if ($1 > c) c = $1; if ($2 > w) w = $2; if ($3 > s) s = $3 }
    END { printf "{\"pooler_peak_clients\":%d,\"pooler_peak_waiting\":%d,\"pooler_peak_servers\":%d}\n", c, w, s }' \
    "$1/pools.txt"
}
