#!/usr/bin/env bash
# `make test`, after the suite: the clock-marked tests again under libfaketime, at instants where
# date code that assumes the hour, the weekday, the zone or the year breaks. Why these
# settings (relative offset, real monotonic clock, Berlin time, timeout): tests/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}
# `tests/faketime_runs.sh --all` runs the whole suite at each instant instead (about 5 minutes
# each on 2 cores, so not in `make test`); other arguments go to pytest.
SELECT=(-m clock)
LIMIT=300
if [[ "${1:-}" == "--all" ]]; then
  SELECT=()
  LIMIT=1800
  shift
fi
INSTANTS=(
  "2026-12-07T00:46:00Z" # a Monday just after midnight UTC: a new day and a new week
  "2027-03-28T00:59:30Z" # 30 s before Europe/Berlin springs forward (a Sunday)
  "2027-10-31T00:59:30Z" # 30 s before Europe/Berlin falls back (a Sunday)
  "2027-12-31T23:59:30Z" # 30 s before the year ends
  "2028-02-29T23:59:30Z" # 30 s before a leap day ends
)
failed=()
for at in "${INSTANTS[@]}"; do
  offset=$(($(date -d "$at" +%s) - $(date +%s)))
  echo "== ${SELECT[*]:-all} tests at $at (faketime offset ${offset}s)"
  PYTHONPATH="$PWD/tests/faketime${PYTHONPATH:+:$PYTHONPATH}" \
    FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=Europe/Berlin timeout "$LIMIT" \
    faketime -f "$(printf '%+d' "$offset")" "$PYTEST" "${SELECT[@]}" -q -p no:cacheprovider "$@" || failed+=("$at")
done
if ((${#failed[@]})); then
  echo "failed at: ${failed[*]}"
  exit 1
fi
