#!/bin/sh
# azd postdeploy hook: create the gateway's function key when Key Vault does not hold one yet
# (idempotent: --if-missing), then print how to connect. Function keys can only be created
# once code is deployed on Flex Consumption, hence after deploy and not after provision.
set -eu
cd "$(dirname -- "$0")/../.."
. ./infra/hooks/lib.sh

: "${AZURE_SUBSCRIPTION_ID:?AZURE_SUBSCRIPTION_ID is not set}"
: "${AZURE_RESOURCE_GROUP:?AZURE_RESOURCE_GROUP is not set: run azd provision first}"
: "${FUNCTION_APP_NAME:?FUNCTION_APP_NAME is not set: run azd provision first}"
: "${KEYVAULT_URL:?KEYVAULT_URL is not set: run azd provision first}"
: "${FUNCTION_KEY_SECRET:?FUNCTION_KEY_SECRET is not set: run azd provision first}"
: "${GATEWAY_URL:?GATEWAY_URL is not set: run azd provision first}"

# Retried: right after a deployment the Functions host may still answer key requests with
# "error ... from host runtime".
retry "postdeploy: create the gateway's function key" \
  go run ./gateway/cmd/mcpgate keys rotate \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --app "$FUNCTION_APP_NAME" \
  --keyvault-url "$KEYVAULT_URL" \
  --secret "$FUNCTION_KEY_SECRET" \
  --gateway-url "$GATEWAY_URL" \
  --if-missing

cat <<MSG

mcpgate is deployed.
  MCP endpoint (Streamable HTTP): ${MCP_ENDPOINT:?}
  MCP endpoint (legacy SSE):      ${MCP_SSE_ENDPOINT:?}
  Try it with the MCP Inspector:  ${MCP_INSPECTOR_COMMAND:?}
MSG
