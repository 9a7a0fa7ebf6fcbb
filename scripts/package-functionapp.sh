#!/usr/bin/env bash
# Builds the Flex Consumption deployable folder of the function app (custom handler):
#   OUTDIR/handler            linux/amd64 static binary, executable
#   OUTDIR/host.json          custom-handler host configuration
#   OUTDIR/mcp/function.json  the catch-all HTTP function (authLevel function)
# Usage: scripts/package-functionapp.sh OUTDIR   (azd's prepackage hook calls it)
set -euo pipefail
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
version=${VERSION:-$(git -C "$root" describe --always --dirty 2>/dev/null || echo dev)}
rm -rf "$out/handler" "$out/host.json" "$out/mcp"
mkdir -p "$out/mcp"
(cd "$root/functionapp" && GOOS=linux GOARCH=amd64 CGO_ENABLED=0 \
  go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/handler" ./cmd/handler)
chmod 0755 "$out/handler"
install -m 0644 "$root/functionapp/host.json" "$out/host.json"
install -m 0644 "$root/functionapp/mcp/function.json" "$out/mcp/function.json"
echo "function app package: $out (handler $version, linux/amd64)"
