#!/usr/bin/env bash
# The full IMDb run on a CPU (benchmarks/results/README.md, "Full IMDb on a CPU"): fit, then the test of all
# 25,000 test reviews in the same process, export, then the test of the reviews truncation cuts under `head`
# and under `tail` (docs/evaluation.md), each stage timed and its memory recorded (bert_imdb.bench.memory.MemoryByStage):
#   benchmarks/full_run.sh OUT_DIR [CONFIG]        (from the repository root; CONFIG: configs/full-minilm-cpu.yaml)
#   python benchmarks/full_run.py report OUT_DIR lightning_logs/<name>/version_<n>    the figures, as Markdown
# OUT_DIR gets stages.tsv (stage, start, end, exit status), memory-<stage>-<start>.json and the export
# (OUT_DIR/model). The fit writes last.ckpt every 100 steps: run the same command again after an interruption
# and the fit continues from it (`fit --ckpt_path last`, exact resume), and the stages already done are
# skipped. Extra arguments for every stage (a smaller run, say; not its logger) go in FULL_RUN_ARGS.
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: benchmarks/full_run.sh OUT_DIR [CONFIG]" >&2
    exit 2
fi
OUT=$(realpath -m "$1")
CONFIG=${2:-configs/full-minilm-cpu.yaml}
read -r -a EXTRA <<<"${FULL_RUN_ARGS:-}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

done_already() { grep -q "^$1	.*	0$" "$OUT/stages.tsv" 2>/dev/null; }

stage() {  # stage NAME COMMAND...: runs it unless it already ended well, and records how it ended
    local name=$1 start status
    shift
    done_already "$name" && return 0
    start=$(date +%s)
    echo "== full_run.sh: $name" >&2
    "$@" --trainer.callbacks+=bert_imdb.bench.memory.MemoryByStage \
        --trainer.callbacks.path="$OUT/memory-$name-$start.json" --trainer.callbacks.every_n_steps=100
    status=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$start" "$(date +%s)" "$status" >>"$OUT/stages.tsv"
    return $status
}

CLI=(python -m bert_imdb)
# A fit that started before (its line in stages.tsv, or none because it was killed) continues from last.ckpt.
resume=()
[ -f "$OUT/fit.started" ] && resume=(--ckpt_path last)
touch "$OUT/fit.started"
# The test of the best checkpoint runs in the fit's process (--test_after_fit): no second start-up and
# tokenization. Continued after an interruption, a fit that had ended trains nothing more and tests.
stage fit "${CLI[@]}" fit --config "$CONFIG" "${resume[@]}" --last_checkpoint.every_n_train_steps 100 \
    --test_after_fit true "${EXTRA[@]}" || exit 1
# The run's best checkpoint (as its last.ckpt records it), and its max_length + 1: the reviews longer than
# max_length, the only ones another truncation changes.
read -r best longer < <(python "$(dirname "$0")/full_run.py" best "$CONFIG") || exit 1
if ! done_already export; then
    start=$(date +%s)
    python -m bert_imdb export --ckpt_path "$best" --output_dir "$OUT/model" --overwrite true
    status=$?
    printf 'export\t%s\t%s\t%s\n' "$start" "$(date +%s)" "$status" >>"$OUT/stages.tsv"
    [ $status = 0 ] || exit 1
fi
for truncation in head tail; do
    stage "test-$truncation" "${CLI[@]}" test --config "$CONFIG" --ckpt_path best \
        --data.truncation "$truncation" --data.test_min_tokens "$longer" "${EXTRA[@]}" || exit 1
done
echo "full_run.sh: done; the figures: python $(dirname "$0")/full_run.py report $OUT $(dirname "$(dirname "$best")")" >&2
