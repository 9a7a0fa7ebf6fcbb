#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine that has Go, Node 20 and npm:
# redis-server and chromium from Debian, the pinned npm tools from e2e/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  echo "installing ${need[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -f e2e/node_modules/.package-lock.json ] || [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
  echo "installing npm tools (e2e/package-lock.json)"
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
