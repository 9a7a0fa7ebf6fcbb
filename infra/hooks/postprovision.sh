#!/bin/sh
# azd postprovision hook: create the gateway's session-key ring in Key Vault when it does not
# exist yet (idempotent: an existing ring is left alone). Needs Go on PATH; azd passes the
# Bicep outputs as environment variables.
set -eu
cd "$(dirname -- "$0")/../.."
. ./infra/hooks/lib.sh

: "${KEYVAULT_URL:?KEYVAULT_URL is not set: run azd provision first}"
: "${SESSION_KEYS_SECRET:?SESSION_KEYS_SECRET is not set: run azd provision first}"
: "${GATEWAY_URL:?GATEWAY_URL is not set: run azd provision first}"

# Retried: the Key Vault Secrets Officer role the Bicep gives you may still be propagating.
retry "postprovision: create the session-key ring in $KEYVAULT_URL" \
  go run ./gateway/cmd/mcpgate secrets generate --keyvault-url "$KEYVAULT_URL" --secret "$SESSION_KEYS_SECRET"

# The Entra redirect URI and MCPGATE_PUBLIC_URL use the gateway URL predicted from the Container
# Apps environment's default domain; warn loudly if Azure gave the app another host name.
if [ -n "${GATEWAY_FQDN:-}" ] && [ "https://$GATEWAY_FQDN" != "$GATEWAY_URL" ]; then
  echo "postprovision: WARNING: the gateway's host name is https://$GATEWAY_FQDN but GATEWAY_URL is $GATEWAY_URL;" >&2
  echo "postprovision: sign-in will fail (redirect URI mismatch). Please report this with both values." >&2
fi
