#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: a temporary folder, a loopback
# port, an unprivileged user, stopped and deleted at the end.
#
#   Tests/Support/postgres.sh start FOLDER   initdb + start; prints the state URI
#   Tests/Support/postgres.sh restart FOLDER [PAUSE]  stop the server (fast: sessions are ended),
#                                            wait PAUSE seconds (default 0), start it again
#   Tests/Support/postgres.sh stop FOLDER    stop the server and delete FOLDER
#
# The server binaries come from Debian's postgresql package (make test installs
# it when missing). As root, the cluster belongs to `nobody`: PostgreSQL refuses
# to run as root.
set -euo pipefail
# The server must not keep descriptors of whoever called this script: a parent
# that learns of the script's end through one of them would wait for the server.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  case $fd in 0|1|2|255) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
done
command=$1
folder=$2
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries (install the postgresql package)" >&2; exit 1; }
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
case "$command" in
start)
  mkdir -p "$folder"
  [ "$(id -u)" = 0 ] && chown nobody "$folder"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  echo flujo-test-password >"$folder/pwfile"
  [ "$(id -u)" = 0 ] && chown nobody "$folder/pwfile"
  as_owner "$bin/initdb" -D "$folder/data" -U flujo --auth=scram-sha-256 --pwfile="$folder/pwfile" -E UTF8 >"$folder/initdb.log" 2>&1 \
    || { cat "$folder/initdb.log" >&2; exit 1; }
  rm -f "$folder/pwfile"
  as_owner "$bin/pg_ctl" -D "$folder/data" -l "$folder/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$folder' -c max_connections=200 -c fsync=off" start >/dev/null \
    || { cat "$folder/server.log" >&2; exit 1; }
  PGPASSWORD=flujo-test-password "$bin/createdb" -h 127.0.0.1 -p "$port" -U flujo flujo_test
  echo "postgres://flujo:flujo-test-password@127.0.0.1:$port/flujo_test"
  ;;
restart)
  as_owner "$bin/pg_ctl" -D "$folder/data" -m fast -w -t 60 stop >/dev/null
  sleep "${3:-0}"
  # The same options as at start: pg_ctl keeps them in postmaster.opts.
  opts="$(sed -e 's/^[^ ]* //' -e 's/"-D" "[^"]*" //g' "$folder/data/postmaster.opts")"
  as_owner "$bin/pg_ctl" -D "$folder/data" -l "$folder/server.log" -w -t 60 -o "$opts" start >/dev/null \
    || { tail -20 "$folder/server.log" >&2; exit 1; }
  ;;
stop)
  if [ -d "$folder/data" ]; then as_owner "$bin/pg_ctl" -D "$folder/data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$folder"
  ;;
*)
  echo "usage: $0 start|restart|stop FOLDER" >&2; exit 2
  ;;
esac
