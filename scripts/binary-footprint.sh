#!/usr/bin/env bash
# binary-footprint.sh — how big the shipped gateway binary is, how much of it a fresh process
# keeps resident, and what makes the linker keep every exported method (see BENCHMARKS.md,
# "Peak RSS: why < 25 MiB is out of reach").
#
#   scripts/binary-footprint.sh            build as shipped, start `mcpgate serve --dev` (in-memory
#                                          store) on a free port for 2 s, report, stop it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=

echo "building gateway/cmd/mcpgate as shipped (static, -trimpath, -s -w)…" >&2
(cd "$root/gateway" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags="-s -w" -o "$work/mcpgate" ./cmd/mcpgate)
size=$(stat -c %s "$work/mcpgate")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18765)
echo "x" > "$work/function-key"
(cd "$work" && exec ./mcpgate serve --dev --listen "127.0.0.1:$port" --public-url "http://127.0.0.1:$port" \
  --metrics-listen "" --backend-url http://127.0.0.1:9 --function-key-file "$work/function-key" \
  --session-keys-file "$work/session-keys.json" --clients-store "$work/clients" --log-level warn) >/dev/null 2>&1 &
pid=$!
sleep 2
if ! kill -0 "$pid" 2>/dev/null; then
  echo "mcpgate serve did not start" >&2
  exit 1
fi
anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")
file=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status")

awk -v size="$size" -v anon="$anon" -v file="$file" 'BEGIN {
  printf "binary:    %.1f MB\n", size / 1e6
  printf "idle RSS:  %.1f MiB = %.1f MiB anonymous + %.1f MiB of the binary'"'"'s own pages\n", (anon + file) / 1024, anon / 1024, file / 1024
}'
deps=$(cd "$root/gateway" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags=-dumpdep -o /dev/null ./cmd/mcpgate 2>&1 || true)
echo "calls that make the linker keep every exported method (reflect MethodByName with a run-time name):"
grep '<ReflectMethod>' <<<"$deps" | awk '$1 !~ /^(type:|reflect\.)/ {print "  " $1}' | sort -u || true
echo "first callers of template execution (the linker lists one path per symbol):"
grep -E -e '-> (html|text)/template\.\(\*Template\)\.Execute' <<<"$deps" | awk '$1 !~ /^(type:|html\/template|text\/template)/ {print "  " $1}' | sort -u || true
if grep -q -e '-> golang.org/x/net/trace\.' <<<"$deps"; then
  echo "golang.org/x/net/trace is linked (through gRPC; its init renders /debug/requests with html/template):"
  grep -e '-> golang.org/x/net/trace\.' <<<"$deps" | awk '$1 !~ /^golang.org\/x\/net\/trace/ {print "  " $1}' | sort -u | head -5
fi
