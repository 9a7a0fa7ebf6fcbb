#!/bin/sh
# azd prepackage hook of the `functionapp` service: build the deployable folder (handler for
# linux/amd64 with its exec bit, host.json, mcp/function.json) into <dist>.
# usage: prepackage-functionapp.sh <dist>   (<dist> relative to the repository root, or absolute;
# azure.yaml passes the same path as the service's `dist`, and e2e/infra_test.go checks both)
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
dist=${1:?usage: prepackage-functionapp.sh <dist>}
case $dist in
  /*) ;;
  *) dist="$root/$dist" ;;
esac
cd "$root"
exec "$root/scripts/package-functionapp.sh" "$dist"
