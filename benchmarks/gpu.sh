#!/usr/bin/env bash
# Every GPU measurement of docs/speed.md, in one run, on a machine without network:
#   benchmarks/gpu.sh RESULTS_DIR MODEL_DIR DATA_DIR
# MODEL_DIR: all-MiniLM-L6-v2 (fp32 or fp16 weights); DATA_DIR: IMDb laid out like stanfordnlp/imdb; or
# `python benchmarks/payload.py pack`'s folders (MODEL_DIR its model/, DATA_DIR its imdb/), whose wheels/
# beside them are installed first (pip, no index: the packages the GPU machine's image lacks).
# Each part writes its JSON and Markdown into RESULTS_DIR; summary.txt says how each ended and how long it
# took. A part that fails is recorded, and the next one runs. About 6 minutes on one H100 (budget: 8).
#   (e) sync check: training and validation steps under torch.cuda.set_sync_debug_mode("error"), of the
#       classifier and of MLM (first: it is quick)
#   (a) the seed recipe, the tuned Trainer peer and bert_imdb: all-MiniLM-L6-v2, 1,000/500 reviews, 1 epoch,
#       batch 8, each once per seed (42, 43, 44)
#   (b) bert-base shapes (random weights), peer and bert_imdb: batch 32, max length 512
#   (c) all-MiniLM-L6-v2 on full IMDb (configs/full-minilm.yaml): fit and test, timed
#   (d) MLM pre-training throughput, head on the scored positions and on every position
# GPU_SH_QUICK=1 shrinks every part to a step or two of a tiny model on the CPU: the test suite runs it so.
# GPU_SH_PARTS="a c" runs only the parts named (by letter); the default is every part.
# GPU_SH_DRY=1 prints each part's command instead of running it (the suite checks their arguments).
set -uo pipefail

if [ $# -ne 3 ] || [ ! -d "$2" ] || [ ! -d "$3" ]; then
    echo "usage: benchmarks/gpu.sh RESULTS_DIR MODEL_DIR DATA_DIR (MODEL_DIR and DATA_DIR must exist)" >&2
    exit 2
fi
RESULTS=$(realpath -m "$1")
MODEL=$(realpath "$2")
DATA=$(realpath "$3")
cd "$(dirname "$0")/.."  # the repository: configs/ and benchmarks/ are read from there
mkdir -p "$RESULTS"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# A payload of benchmarks/payload.py: its wheels (what the image lacks) first, for the steps below.
if [ -d "$MODEL/../wheels" ] && ls "$MODEL"/../wheels/*.whl >/dev/null 2>&1; then
    python -m pip install --quiet --no-index --no-deps "$MODEL"/../wheels/*.whl || exit 1
    echo "gpu.sh: installed the payload's wheels: $(cd "$MODEL/../wheels" && ls -- *.whl | tr '\n' ' ')"
fi
if [ -f "$MODEL/model.safetensors.xz" ]; then
    python benchmarks/payload.py unpack-model "$MODEL" "$WORK/model" >/dev/null || exit 1
    MODEL=$WORK/model
fi
if [ -f "$DATA/train.tsv.xz" ]; then
    python benchmarks/payload.py unpack "$DATA" "$WORK/imdb" >/dev/null
    DATA=$WORK/imdb
fi

if [ "${GPU_SH_QUICK:-0}" = 1 ]; then
    # One or two optimizer steps per part, a one-size matmul peak and a one-layer bert-base: what can break
    # on a CPU (arguments, the payload, each part's path through bench) in about a minute for all of them.
    PEAK=(--matmul-size 64)
    SYNC=("${PEAK[@]}" --lever-steps 1 --train-samples 16 --test-samples 8 --max-length 32)
    SEED=("${PEAK[@]}" --seeds 42 --train-samples 8 --test-samples 8 --epochs 2 --max-length 64)
    SHAPES=("${PEAK[@]}" --layers 1 --train-samples 4 --test-samples 4 --epochs 1 --batch-size 4 --max-length 32)
    FULL=("${PEAK[@]}" --override=--trainer.accelerator=cpu --override=--trainer.precision=32-true
        --override=--data.max_length=32 --override=--data.max_train_samples=32
        --override=--data.max_val_samples=8 --override=--data.max_test_samples=8
        --override=--trainer.max_steps=1 --override=--data.num_proc=1 --override=--data.num_workers=0)
    MLM_SYNC=("${PEAK[@]}" --lever-steps 1 --train-samples 20 --test-samples 8 --max-length 32 --batch-size 8)
    # The defaults and one lever: each lever is its own run of the same path (tests/bench builds them all).
    MLM=("${MLM_SYNC[@]}" --levers "MLM, head on every position")
else
    SYNC=(--lever-steps 20 --train-samples 1000 --test-samples 100 --batch-size 32 --max-length 512)
    SEED=()
    SHAPES=(--train-samples 4000 --test-samples 500 --epochs 1 --batch-size 32 --max-length 512)
    FULL=()
    MLM=(--lever-steps 200 --train-samples 5000 --test-samples 200 --max-length 128 --batch-size 32)
    MLM_SYNC=(--lever-steps 20 --train-samples 1000 --test-samples 200 --max-length 128 --batch-size 32)
fi
# GPU_SH_PARTS="c d" runs those parts alone (to rerun one that failed, say); the default is all of them.
PARTS=" ${GPU_SH_PARTS:-e a b c d} "

part() {
    local name=$1 start status
    shift
    [[ $PARTS == *" ${name:0:1} "* ]] || return 0
    if [ "${GPU_SH_DRY:-0}" = 1 ]; then
        printf '%s:' "$name" && printf ' %q' "$@" && echo
        return 0
    fi
    echo "== gpu.sh: $name"
    start=$(date +%s)
    if "$@"; then status=done; else status="FAILED (exit $?)"; fi
    echo "$name: $status in $(($(date +%s) - start)) s" | tee -a "$RESULTS/summary.txt"
}

BENCH=(python -m bert_imdb.bench --model "$MODEL" --dataset "$DATA" --output-dir "$RESULTS")
echo "gpu.sh $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU')" \
    >>"$RESULTS/summary.txt"
part "e sync check" "${BENCH[@]}" --sync-check "${SYNC[@]}"
part "e MLM sync check" "${BENCH[@]}" --sync-check --mlm "${MLM_SYNC[@]}"
part "a seed recipe" "${BENCH[@]}" "${SEED[@]}"
part "b bert-base shapes" "${BENCH[@]}" --shape bert-base "${SHAPES[@]}"
part "c full IMDb" "${BENCH[@]}" --config configs/full-minilm.yaml "${FULL[@]}"
part "d MLM" "${BENCH[@]}" --mlm "${MLM[@]}"
