#!/usr/bin/env bash
# Every figure that needs an accelerator, in one call of at most ~9 minutes.
#
#   OUT=/path/to/out bash benchmarks/device_checks.sh     # on the GPU
#   QUICK=1 OUT=/tmp/dc bash benchmarks/device_checks.sh  # CPU smoke test
#
# Phases, each under its own time limit so that a slow one cannot eat the
# others' time (what a phase printed before its limit is kept):
#   1. bench:    update cost of the paper (2016) design and the default against
#                optax.adam at 1e5..1e8 parameters, state bytes per parameter,
#                meta-training throughput (benchmarks/bench.py).
#   bandwidth:   the default's update at 1e7 and 1e8 parameters against
#                optax.adam and against the memory-bandwidth floor measured
#                in the same run (benchmarks/bandwidth.py).
#   devices:     meta-training throughput (inner steps/s) of python -m
#                meta_train's meta-step on the devices there are
#                (benchmarks/devices.py).
#   2. wide:     ES meta-training (rank fitness) of the default's (compact)
#                read-outs on four training structures, 16 problems x
#                200-step unrolls of 1000-step episodes: a run the CPU
#                cannot afford.
#   3. validate: the dev score (10 seeds) of the default and of that run.
# Logs go to $OUT/<phase>.log; the run to $OUT/wide. Run from the repo root.
#
# The lent H200 has every dependency but mnist1d, which travels as a wheel:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     -d .whl mnist1d==0.0.2.post1
# then call the device with carry ['.whl'].
set -u
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c 'import mnist1d' 2> /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target \
    /tmp/site .whl/mnist1d-*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [[ "${QUICK:-0}" == 1 ]]; then
  # the paper design: the same code as free's, and its 21-leaf update
  # compiles in half the time (the smoke test's budget)
  BENCH=(--sizes 1e4 --repeats 2 --num-tasks 2 --unroll-length 5
         --designs paper --families quadratic)
  WIDE=(--meta-steps 2 --num-tasks 2 --es-pairs 2 --unroll-length 10
        --episode-length 20 --checkpoint-every 1)
  VALIDATE=(--no-dev --families quadratic --seeds 2 --steps 10)
  BANDWIDTH=(--sizes 1e4 --repeats 2 --bandwidth-floats 1e5)
  DEVICES=(--counts 1 --repeats 1 --family quadratic --num-tasks 2
           --unroll-length 5 --es-pairs 1)
  LIMITS=(120 120 120 60 60)
  WIDE_FAMILY=quadratic+x_squared  # two cheap structures: the flags, not the figure
else
  BENCH=(--designs paper default)
  WIDE=(--meta-steps 1000 --num-tasks 16 --es-pairs 32 --unroll-length 200
        --episode-length 1000 --checkpoint-every 2 --data-subsets 500)
  VALIDATE=(--dev-seeds 10)
  BANDWIDTH=(--sizes 1e7 1e8)
  DEVICES=(--counts 1 --num-tasks 64 --unroll-length 50)
  LIMITS=(120 150 120 90 60)
  WIDE_FAMILY=quadratic+mnist1d_mlp_paper+digits_mlp_48_relu+mnist1d_mlp_24x24_tanh
fi

phase() {  # phase NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 60 "$OUT/$name.log"
  echo "== $name: rc $rc in $((SECONDS - start)) s"
}

python3 -c 'import jax; print("devices", jax.devices())'
phase bench "${LIMITS[0]}" python3 benchmarks/bench.py "${BENCH[@]}"
phase bandwidth "${LIMITS[3]}" python3 benchmarks/bandwidth.py "${BANDWIDTH[@]}"
phase devices "${LIMITS[4]}" python3 benchmarks/devices.py "${DEVICES[@]}"
phase wide "${LIMITS[1]}" python3 -m meta_train --out "$OUT/wide" --no-eval \
  --no-progress --compilation-cache '' \
  --family "$WIDE_FAMILY" \
  --design compact --hidden-size 4 --num-layers 1 --estimator es \
  --es-sigma 0.03 --es-fitness rank --train-only output \
  --loss-weighting linear --meta-lr 3e-3 "${WIDE[@]}"
if python3 -m meta_train.export "$OUT/wide" --out "$OUT/wide.npz"; then
  phase validate "${LIMITS[2]}" python3 -m meta_train.validate default \
    "$OUT/wide.npz" "${VALIDATE[@]}"
else
  echo '== validate: skipped, the run left no checkpoint'
fi
