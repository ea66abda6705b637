#!/usr/bin/env bash
# `make test`, after the suite: the clock-marked tests again under libfaketime, at instants where
# date code that assumes the hour, the weekday, the zone or the year breaks. Why these
# settings (relative offset, real monotonic clock, Berlin time, timeout): tests/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}
INSTANTS=(
  "2026-12-07T00:46:00Z" # a Monday just after midnight UTC: a new day and a new week
  "2027-03-28T00:59:30Z" # 30 s before Europe/Berlin springs forward (a Sunday)
  "2027-10-31T00:59:30Z" # 30 s before Europe/Berlin falls back (a Sunday)
  "2027-12-31T23:59:30Z" # 30 s before the year ends
  "2028-02-29T23:59:30Z" # 30 s before a leap day ends
)
for at in "${INSTANTS[@]}"; do
  offset=$(($(date -d "$at" +%s) - $(date +%s)))
  echo "== clock tests at $at (faketime offset ${offset}s)"
  FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=Europe/Berlin timeout 300 \
    faketime -f "$(printf '%+d' "$offset")" "$PYTEST" -m clock -q -p no:cacheprovider "$@"
done
