#!/usr/bin/env bash
# The GPU run sheet: one command, under 10 minutes on one modern GPU (most of it is model set-up).
#
#   bash bench/gpu.sh              # on a GPU machine: ViT-B-16 (random weights, 224 px), bf16
#   bash bench/gpu.sh --cpu-tiny   # the same steps on the CPU with a tiny open_clip ViT (a check; ~1-3 min)
#   WISEFT_SHEET_CPU_TINY=1 bash bench/gpu.sh     # the same as --cpu-tiny
#
# Steps, each timed:
#   1. the machine: nvidia-smi basics (GPU mode) or the CPUs, torch / CUDA versions;
#   2. bench/gpu_throughput.py: training and evaluation images/s of the package's engine against bare
#      PyTorch loops (ratios engine time / bare time, targets <= 1.05);
#   3. bench/synthetic_imagenet.py: synthetic ImageNet + its five shifts in their real layouts (temp folder);
#   4. the paper preset of Figure 1 (params/paper/fig1_id_vs_ood.yaml) on them: model=ViT-B-16
#      pretrained=random device=cuda smoke=true, one prompt template, 4 loader workers;
# then prints curve.csv and one line "gpu sheet: PASS" or "gpu sheet: FAIL (...)". PASS needs the study's
# curve (alphas 0, 0.5, 1; end-to-end and linear; finite accuracies) and, on a GPU, the throughput targets.
#
# Environment: PROCESSES=N adds --set processes=N (the study launches its fine-tunes and sweeps through
# torchrun on N processes; 0 = one per GPU); KEEP=1 keeps the temp folder (data, runs, outputs);
# PYTHON overrides the interpreter (default .venv/bin/python if present, else python).
set -euo pipefail

MODE=gpu
for arg in "$@"; do
  case "$arg" in
    --cpu-tiny) MODE=cpu ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $arg (use --cpu-tiny or nothing)" >&2; exit 2 ;;
  esac
done
if [[ "${WISEFT_SHEET_CPU_TINY:-0}" == 1 ]]; then MODE=cpu; fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wiseft-gpu-sheet.XXXXXX")
if [[ "${KEEP:-0}" == 1 ]]; then
  trap 'echo "(kept $TMP)"' EXIT
else
  trap 'rm -rf "$TMP"' EXIT
fi

SHEET_START=$SECONDS
TIMES=()
step() {  # step NAME COMMAND...: run it, print and remember its seconds
  local name=$1; shift
  local t0=$SECONDS
  echo
  echo "== $name"
  "$@"
  TIMES+=("$(printf '%-34s %5d s' "$name" $((SECONDS - t0)))")
  echo "-- $name: $((SECONDS - t0)) s"
}

machine() {
  echo "host $(hostname), $(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all) CPUs, mode $MODE, python $PY, repo $ROOT"
  if [[ $MODE == gpu ]]; then
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,driver_version,power.limit \
        --format=csv
    else
      echo "nvidia-smi not found"
    fi
  fi
  "$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs visible: {torch.cuda.device_count()}")
EOF
}

if [[ $MODE == gpu ]]; then
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu.sh: torch sees no CUDA device; run 'bash bench/gpu.sh --cpu-tiny' for the CPU check" >&2
    exit 1
  fi
  DEVICE=cuda MODEL=ViT-B-16 WORKERS=4 SIZE=256
  THROUGHPUT=(--device cuda --model ViT-B-16)
else
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  # a real open_clip architecture at a tiny size, registered by name like a user's own config
  mkdir -p "$TMP/configs"
  cat > "$TMP/configs/wiseft-sheet-tiny.json" <<'EOF'
{"embed_dim": 32,
 "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
EOF
  export WISEFT_MODEL_CONFIGS="$TMP/configs${WISEFT_MODEL_CONFIGS:+:$WISEFT_MODEL_CONFIGS}"
  DEVICE=cpu MODEL=wiseft-sheet-tiny WORKERS=0 SIZE=64
  THROUGHPUT=(--device cpu --tiny)
fi

step "machine" machine
throughput() { "$PY" bench/gpu_throughput.py "${THROUGHPUT[@]}" | tee "$TMP/throughput.txt"; }
step "throughput (gpu_throughput.py)" throughput
step "synthetic ImageNet + shifts" "$PY" bench/synthetic_imagenet.py "$TMP/data" --size "$SIZE"

STUDY=(run fig1_id_vs_ood --params params/paper/fig1_id_vs_ood.yaml
  --set "model=$MODEL" --set pretrained=random --set "data_root=$TMP/data" --set "device=$DEVICE"
  --set smoke=true --set "output_dir=$TMP/out" --set "runs_dir=$TMP/runs"
  --set 'templates=["a photo of a {}."]' --set "num_workers=$WORKERS" --set eval_batch_size=256
  --set 'e2e={epochs: 10, lr: 3.0e-5, batch_size: 128, weight_decay: 0.1, warmup_steps: 500}'
  --no-progress)
if [[ -n "${PROCESSES:-}" ]]; then STUDY+=(--set "processes=$PROCESSES"); fi
step "Figure 1 paper preset, smoke" "$PY" -m wiseft_lib.cli "${STUDY[@]}"

echo
echo "== curve.csv"
if [[ -f "$TMP/out/curve.csv" ]]; then
  if command -v column >/dev/null; then column -s, -t < "$TMP/out/curve.csv"; else cat "$TMP/out/curve.csv"; fi
fi
if [[ -f "$TMP/out/summary.md" ]]; then echo; echo "== summary.md"; cat "$TMP/out/summary.md"; fi

echo
echo "== times"
printf '%s\n' "${TIMES[@]}"
TOTAL=$((SECONDS - SHEET_START))
echo "total: $TOTAL s (target < 600 s)"

PROBLEMS=$("$PY" - "$TMP/out/curve.csv" "$TMP/throughput.txt" "$MODE" <<'EOF'
import math, sys
from pathlib import Path

import pandas as pd

curve_path, throughput, mode = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), sys.argv[3]
problems = []
if not curve_path.exists():
    problems.append("no curve.csv")
else:
    curve = pd.read_csv(curve_path)
    if not {0.0, 0.5, 1.0} <= set(curve["alpha"].round(4)):
        problems.append(f"curve alphas {sorted(set(curve['alpha']))}")
    if "mode" in curve and len(set(curve["mode"])) < 2:
        problems.append(f"curve modes {sorted(set(curve['mode']))}")
    acc = curve[["id_acc", "ood_avg"]].to_numpy().ravel()
    if not all(math.isfinite(v) and 0 <= v <= 100 for v in acc):
        problems.append("accuracies not finite / not in [0, 100]")
line = next((l for l in throughput.splitlines() if l.startswith("all targets met:")), None)
if line is None:
    problems.append("no throughput result")
elif mode == "gpu" and not line.endswith("yes"):
    problems.append("throughput " + line.split(":", 1)[1].strip())
print("; ".join(problems))
EOF
)
if [[ $MODE == gpu && $TOTAL -ge 600 ]]; then PROBLEMS="${PROBLEMS:+$PROBLEMS; }took $TOTAL s >= 600 s"; fi
if [[ -z "$PROBLEMS" ]]; then
  echo "gpu sheet: PASS ($MODE mode, $TOTAL s)"
else
  echo "gpu sheet: FAIL ($MODE mode: $PROBLEMS)"
  exit 1
fi
