#!/usr/bin/env bash
# Starts the local stack in the foreground: the function app (standalone, local snippet
# directory, function-key check) and the gateway (development login, in-memory store or
# Redis when MCPGATE_REDIS_URL / REDIS_URL is set). Ctrl-C stops both.
# State lives in .mcpgate/ at the repository root (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/.mcpgate
bin=$root/bin
mkdir -p "$state/secrets" "$state/snippets" "$state/clients"
chmod 700 "$state" "$state/secrets"

# One function key shared by both programs: the function app's host secrets and the
# one-line file the gateway reads. Generated once, then kept (rotate with `mcpgate keys rotate --local`).
if [ ! -s "$state/function-key" ] || [ ! -s "$state/secrets/host.json" ]; then
  newkey() { head -c 40 /dev/urandom | base64 -w0 | tr '+/' '-_'; }
  key=$(newkey); master=$(newkey)
  umask 077
  printf '%s\n' "$key" > "$state/function-key"
  cat > "$state/secrets/host.json" <<JSON
{
  "masterKey": {"name": "master", "value": "$master", "encrypted": false},
  "functionKeys": [{"name": "gateway", "value": "$key", "encrypted": false}],
  "systemKeys": []
}
JSON
  echo "generated a function key in $state/secrets/host.json and $state/function-key"
fi

redis_url=${MCPGATE_REDIS_URL:-${REDIS_URL:-}}
listen=${MCPGATE_LISTEN:-127.0.0.1:8000}
public=${MCPGATE_PUBLIC_URL:-http://$listen}
func_listen=${FUNCTIONAPP_LISTEN:-127.0.0.1:7071}

pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

FUNCTIONAPP_LISTEN=$func_listen FUNCTIONAPP_SECRETS_DIR=$state/secrets SNIPPETS_DIR=${SNIPPETS_DIR:-$state/snippets} \
  "$bin/handler" &
pids+=($!)

args=(serve --dev --listen "$listen" --public-url "$public" --backend-url "http://$func_listen"
      --function-key-file "$state/function-key" --session-keys-file "$state/session-keys.json"
      --clients-store "$state/clients")
[ -n "$redis_url" ] && args+=(--redis-url "$redis_url")
"$bin/mcpgate" "${args[@]}" &
pids+=($!)

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null; then break; fi
  sleep 0.1
done
cat <<MSG

  mcpgate is running (development login; store: ${redis_url:-in-memory}).
    MCP endpoint (Streamable HTTP): $public/mcp
    Legacy SSE endpoint:            $public/mcp/sse
    Landing page:                   $public/

  Connect MCP Inspector (sign in through the development login in your browser):
    npx @modelcontextprotocol/inspector
      → Transport "Streamable HTTP", URL $public/mcp, Connect

  Ctrl-C stops both programs.

MSG
wait -n "${pids[@]}" || true
echo "a process exited; stopping the stack" >&2
