#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a short time (default 5s each).
# Usage: scripts/fuzz-all.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-5s}
found=0
hiccups=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS= read -r file; do
  dir=$(dirname "$file")
  mod=${dir%%/*}
  pkg=./${dir#"$mod"/}
  [ "$dir" = "$mod" ] && pkg=.
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    found=$((found+1))
    echo "fuzz $mod $pkg $target ($fuzztime)"
    # A real finding always writes its failing input. A failure that wrote none is, as far as
    # we have seen, the fuzzing engine's own race at the -fuzztime boundary (golang/go#51484:
    # "context deadline exceeded" while a worker is still mid-call, likelier on a busy 2-core
    # machine): retry the target up to three times. If the third attempt is again a bare
    # deadline, warn and go on (the corpus replay in `make unit` stays the deterministic
    # gate); any other failure on the third attempt fails.
    for attempt in 1 2 3; do
      if (cd "$mod" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg") >"$log" 2>&1; then
        break
      fi
      if grep -q 'Failing input written to' "$log"; then
        cat "$log"
        exit 1
      fi
      if [ "$attempt" -lt 3 ]; then
        echo "  (no failing input written: engine hiccup, retrying; attempt $attempt of 3)"; tail -n 4 "$log"
      elif grep -q 'context deadline exceeded' "$log"; then
        echo "  WARNING: $target stopped three times by the engine's deadline race; nothing found, going on"
        hiccups=$((hiccups+1))
      else
        cat "$log"
        exit 1
      fi
    done
  done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' functionapp gateway e2e 2>/dev/null | sort)
if [ "$hiccups" -gt 0 ]; then
  echo "fuzz: $found targets ran ($hiccups stopped three times by the engine's deadline race)"
else
  echo "fuzz: $found targets ran"
fi
