#!/usr/bin/env bash
# Run benchmarks/quality_deblur.py as N parallel shards (for a GPU machine, or more cores).
#
# Usage: bash benchmarks/parallel_deblur.sh N OUTDIR [quality_deblur.py arguments ...]
#
# Shard K runs problems K, K+N, ... and appends its runs to OUTDIR/shard-K.jsonl (log:
# OUTDIR/shard-K.log); runs already in benchmarks/runs/deblur.jsonl are reused, not redone.
# Afterwards join the new runs into the main record and make the table without --shard:
#   cat OUTDIR/shard-*.jsonl >> benchmarks/runs/deblur.jsonl
#   python benchmarks/quality_deblur.py [the same arguments]
# Each shard gets an equal share of the CPU threads, so that N processes do not oversubscribe
# the cores (the GPU does the network work with --device cuda; the metrics stay on the CPU).
set -euo pipefail
if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash benchmarks/parallel_deblur.sh N OUTDIR [quality_deblur.py arguments]; N a positive integer, got '${1:-}'" >&2
  exit 2
fi
n=$1
out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
threads=$(( $(nproc) / n ))
export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
pids=()
for ((k = 0; k < n; k++)); do
  python "$here/quality_deblur.py" "$@" --shard "$k/$n" --runs "$out/shard-$k.jsonl" \
    --reuse "$here/runs/deblur.jsonl" >"$out/shard-$k.log" 2>&1 &
  pids+=($!)
done
failed=0
for k in "${!pids[@]}"; do
  if ! wait "${pids[$k]}"; then
    echo "shard $k/$n failed; see $out/shard-$k.log" >&2
    failed=1
  fi
done
exit $failed
