#!/usr/bin/env bash
# The issue-17 side-by-side table: runs ../shared/bench/gateway-vs-peers.sh (wrk, one Go mock, nginx, the Go
# ReverseProxy at GOMAXPROCS=1, a fasthttp proxy, the gateway with key auth + team RPM/TPM/monthly limits +
# routing + usage ledger) and prints one table. usage: test/loadbench/peers.sh <bin/handler>
#   env: HARNESS (default ../shared/bench/gateway-vs-peers.sh beside the repo), PEERS (scratch dir), TARGETS,
#        GW_GOMAXPROCS (run the gateway with this GOMAXPROCS), KEEP=1 (keep the raw output)
set -u
GW=$(realpath "${1:-bin/handler}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# beside the repo (../shared), or beside the directory of git worktrees (../../shared)
if [ -z "${HARNESS:-}" ]; then
  for d in "$ROOT/../shared" "$ROOT/../../shared"; do [ -f "$d/bench/gateway-vs-peers.sh" ] && { HARNESS=$d/bench/gateway-vs-peers.sh; break; }; done
fi
HARNESS=${HARNESS:-$ROOT/../shared/bench/gateway-vs-peers.sh}
if [ ! -f "$HARNESS" ]; then echo "peers: $HARNESS not found; skipping the side-by-side table"; exit 0; fi
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "peers: installing wrk and nginx (apt)"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y wrk nginx >/dev/null || { echo "peers: cannot install wrk/nginx; skipping"; exit 0; }
fi
PEERS=${PEERS:-$(mktemp -d)}; mkdir -p "$PEERS"; OUT=$PEERS/peers.out
# The harness starts "$GATEWAY serve ..."; a wrapper sets GOMAXPROCS for the gateway only.
if [ -n "${GW_GOMAXPROCS:-}" ]; then
  printf '#!/bin/sh\n[ "$1" = serve ] && export GOMAXPROCS=%s\nexec %s "$@"\n' "$GW_GOMAXPROCS" "$GW" > $PEERS/gw-wrapper; chmod +x $PEERS/gw-wrapper
  GW=$PEERS/gw-wrapper
fi
echo "peers: running $HARNESS (about 5 minutes; raw output in $OUT)" >&2
PEERS=$PEERS GATEWAY=$GW bash "$HARNESS" > $OUT 2>&1
STATS=$(grep '"msg":"stats"' $PEERS/run/gw.log | tail -1)
awk -v stats="$STATS" '
function ms(v) { if (v ~ /us$/) return (v+0)/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return (v+0)*1000; return v+0 }
function num(v) { return v+0 }
$2=="c=1"  { split($5,a,"="); p1[$1]+=ms(a[2]); n1[$1]++ }
$2=="c=64" && $3=="body.json" { split($4,a,"="); r64[$1]+=num(a[2]); n64[$1]++; split($7,b,"="); rss[$1]=b[2]+0 }
$2=="c=64" && $3=="body_stream.json" { split($6,a,"="); sp99[$1]=ms(a[2]) }
/^ttfb / { t=$2; sub(":","",t); for (i=1;i<=NF;i++) { if ($i ~ /^incomplete=/) { split($i,a,"="); cut[t]=a[2] } if ($i ~ /^errors=/) { split($i,a,"="); errs[t]=a[2] } if ($i=="first_event_ms") { split($(i+1),a,"="); fe[t]=a[2] } } }
/peak RSS/ { peak=int($(NF-1)/1024) " MiB" }
END {
  order="direct nginx goproxy1 fastproxy gateway"; n=split(order, T, " ")
  d64 = n64["direct"] ? r64["direct"]/n64["direct"] : 0; d1 = n1["direct"] ? p1["direct"]/n1["direct"] : 0
  printf "| target | x direct RPS, 64 conn | added p50, 1 conn | stream p99, 64 conn (x bare proxy) | first event added, p50 | cut streams | RSS under load |\n|---|---|---|---|---|---|---|\n"
  for (i=1;i<=n;i++) { t=T[i]; if (!(t in n64) && !(t in n1)) continue
    x = (d64 && n64[t]) ? sprintf("%.2f", r64[t]/n64[t]/d64) : "-"
    ad = (n1[t] && t!="direct") ? sprintf("%+.2f ms", p1[t]/n1[t]-d1) : (t=="direct" ? sprintf("(%.2f ms)", d1) : "-")
    s = (t in sp99) ? sprintf("%.1f ms", sp99[t]) : "-"; if ((t in sp99) && ("goproxy1" in sp99) && t!="goproxy1" && t!="direct") s = s sprintf(" (%.1fx)", sp99[t]/sp99["goproxy1"])
    f = (t in fe) ? ((t=="direct") ? "(" fe[t] " ms)" : sprintf("%+.2f ms", ms(fe[t])-ms(fe["direct"]))) : "-"
    c = (t in cut) ? cut[t] "+" errs[t] " of 4000" : "-"
    printf "| %s | %s | %s | %s | %s | %s | %s MiB |\n", t, x, ad, s, f, c, rss[t] }
  if (peak != "") print "gateway peak RSS (VmHWM): " peak
  if (stats != "") { match(stats, /"requests":[0-9]+/); r=substr(stats, RSTART+11, RLENGTH-11); match(stats, /"table_ops":[0-9]+/); o=substr(stats, RSTART+12, RLENGTH-12)
    printf "gateway table operations: %d for %d requests = %.1f per 1,000 requests\n", o, r, (r>0 ? o*1000/r : 0) }
}' $OUT
[ -n "${KEEP:-}" ] || true
