#!/usr/bin/env bash
# Builds the example service, starts it on a free loopback port, sends one
# order and scrapes /metrics from the app's own port, then stops it with
# SIGTERM and checks that it shut down cleanly, its state file whole.
set -euo pipefail
cd "$(dirname "$0")"
export PATH=/opt/swift/usr/bin:$PATH
swift build
binary="$(swift build --show-bin-path)/OrdersService"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
FLUJO_STATE_URI="$work/state.db" PORT=0 "$binary" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 200); do
  port="$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$work/out" | head -1)"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "the service did not start:"; cat "$work/err"; exit 1; }
answer="$(curl -sf -X POST -H 'content-type: application/json' -d '{"id":"o-1","amount":42}' "http://127.0.0.1:$port/orders")"
echo "POST /orders -> $answer"
grep -q '"status":"completed"' <<<"$answer" || { echo "the run did not complete"; exit 1; }
grep -q '"backgroundTaskIDs":\["bg_' <<<"$answer" || { echo "no background task was launched"; exit 1; }
sleep 0.3
metrics="$(curl -sf "http://127.0.0.1:$port/metrics")"
grep -q '^flujo_tasks_started_total 2$' <<<"$metrics" || { echo "/metrics lacks the tasks started:"; echo "$metrics" | head -40; exit 1; }
grep -q '^flujo_runs_by_status{status="completed"} 1$' <<<"$metrics" || { echo "/metrics lacks the completed run"; exit 1; }
open="$(curl -sf -H 'Accept: application/openmetrics-text' "http://127.0.0.1:$port/metrics")"
tail -1 <<<"$open" | grep -q '^# EOF$' || { echo "OpenMetrics did not end with # EOF"; exit 1; }
echo "GET /metrics -> $(wc -l <<<"$metrics") lines of Prometheus text; OpenMetrics on request"
kill -TERM "$pid"
for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then echo "the service did not stop within 15 s of SIGTERM"; exit 1; fi
wait "$pid" && status=0 || status=$?
[ "$status" = 0 ] || { echo "the service exited with $status:"; cat "$work/err"; exit 1; }
[ ! -e "$work/state.db-wal" ] || { echo "the service left a write-ahead log beside its state file"; exit 1; }
echo "SIGTERM -> stopped cleanly, the state file whole"
