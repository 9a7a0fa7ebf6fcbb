#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a short time (default 5s each).
# Usage: scripts/fuzz-all.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-5s}
found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  mod=${dir%%/*}
  pkg=./${dir#"$mod"/}
  [ "$dir" = "$mod" ] && pkg=.
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    found=$((found+1))
    echo "fuzz $mod $pkg $target ($fuzztime)"
    (cd "$mod" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg") >/tmp/mcpgate-fuzz.log 2>&1 || { cat /tmp/mcpgate-fuzz.log; exit 1; }
  done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' functionapp gateway e2e 2>/dev/null | sort)
echo "fuzz: $found targets ran"
