#!/usr/bin/env bash
# Instructions and cache-line loads per check, counted by callgrind: the `check_cost`
# bench of revocast-core (the filter, beside a HashSet<String>) or of
# revocast-subscriber (`check_local` and `check`), one size per run.
#
#   scripts/check-cost.sh 1000000                  # revocast-core, 1M live entries
#   scripts/check-cost.sh 1000000 subscriber       # revocast-subscriber
#   REVOCAST_COST_POOL=20000 scripts/check-cost.sh 10000000
#
# The cache model is one core's: a 48 KiB L1d (12-way) and a 2 MiB last level
# (16-way), 64-byte lines; CALLGRIND_CACHE overrides it (`--D1=.. --LL=..`). Per
# check: instructions, data reads, reads that missed the L1 ("L1 miss"), and reads
# that missed the last level too ("LL miss": to L3 or memory). CHECK_COST_KEEP=file
# keeps callgrind's output for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."

size="${1:-1000000}"
crate="revocast-${2:-core}"
pool="${REVOCAST_COST_POOL:-100000}"
cache="${CALLGRIND_CACHE:---D1=49152,12,64 --LL=2097152,16,64}"
bin="${CHECK_COST_BIN:-$(cargo bench -q -p "$crate" --bench check_cost --no-run --message-format=json \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# shellcheck disable=SC2086
REVOCAST_BENCH_SIZES="$size" REVOCAST_COST_POOL="$pool" valgrind --tool=callgrind \
  --toggle-collect='check_cost::cost_*' --cache-sim=yes $cache \
  --callgrind-out-file="$out/callgrind.out" "$bin" >"$out/stdout" 2>"$out/stderr"
if [ -n "${CHECK_COST_KEEP:-}" ]; then cp "$out/callgrind.out" "$CHECK_COST_KEEP"; fi

# The bench prints "name: ... (answered of N)" per function: N is its check count.
callgrind_annotate --inclusive=yes --threshold=100 --show=Ir,Dr,D1mr,DLmr "$out/callgrind.out" \
  | awk -v size="$size" '
      FNR == NR {
        if (match($0, /^[a-z0-9_\/]+: /)) {
          name = substr($0, 1, RLENGTH - 2); sub(/.*\//, "", name)
          n = $0; sub(/.* of /, "", n); sub(/\).*/, "", n); count[name] = n
        }
        next
      }
      /:check_cost::cost_[a-z_]+ \[/ {
        line = $0; gsub(",", "", line); gsub(/\([^)]*%\)/, "", line)
        split(line, f, " ")
        name = line; sub(/.*check_cost::cost_/, "", name); sub(/ .*/, "", name)
        n = count[name]; if (n == "") n = count[name "_miss"]; if (n == "") next
        label = (name ~ /^growth/) ? name : size "/" name
        printf "%-30s %7.1f instructions %6.1f reads %6.3f L1 misses %6.3f LL misses per check\n",
          label, f[1] / n, f[2] / n, f[3] / n, f[4] / n
      }' "$out/stdout" - | sort
