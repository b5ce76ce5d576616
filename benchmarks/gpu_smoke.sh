#!/usr/bin/env bash
# GPU smoke test: two rounds of GSM8K teaching with real models on one GPU, recording the time of
# every phase (evaluate, plan, generate, verify, train per round, and server start-up) into
# benchmarks/results/gpu_smoke.json. Where two or more GPUs are visible it then runs one round twice
# more, the LoRA training launched on 2 GPUs (student.train_processes: 2, accelerate + NCCL) and the
# student's server data-parallel (backend.data_parallel_size: 2), then tensor-parallel
# (backend.tensor_parallel_size: 2); their times go under "multi_gpu". MULTI_GPU=0 skips them.
#
# Needs: one NVIDIA GPU; the CUDA build (pip install -e ".[gpu,real]"); the student and teacher
# weights as local folders; GSM8K in the Hugging Face cache (or GSM8K_TRAIN/GSM8K_TEST JSONL files).
# Without any of these it stops at once with exit code 2 and says what is missing.
#
#   benchmarks/gpu_smoke.sh
#   STUDENT_MODEL=models/Llama-3.2-1B-Instruct TEACHER_MODEL=models/Llama-3.1-8B-Instruct benchmarks/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
STUDENT_MODEL=${STUDENT_MODEL:-models/Qwen2.5-0.5B-Instruct}
TEACHER_MODEL=${TEACHER_MODEL:-models/Qwen2.5-7B-Instruct}
TEACHER_PORT=${TEACHER_PORT:-8001}
OUT=benchmarks/results/gpu_smoke.json

fail() { echo "gpu_smoke: $*" >&2; exit 2; }

# --- preconditions: fail clearly, before anything starts -------------------------------------------
[ -x "$PY" ] || fail "no Python at $PY (run make install, or set PYTHON=...)"
command -v nvidia-smi >/dev/null 2>&1 || fail "no NVIDIA GPU here (nvidia-smi not found); this smoke test needs one GPU"
nvidia-smi -L 2>/dev/null | grep -q "^GPU" || fail "nvidia-smi lists no GPU"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || fail "torch sees no CUDA device: install the CUDA build (pip install -e '.[gpu,real]')"
"$PY" -c "import vllm, openai, math_verify" 2>/dev/null \
  || fail "vllm, openai or math-verify missing: pip install -e '.[gpu,real]'"
for model in "$STUDENT_MODEL" "$TEACHER_MODEL"; do
  [ -f "$model/config.json" ] || fail "no model weights at $model: huggingface-cli download <hub id> --local-dir $model"
done
if [ -n "${GSM8K_TRAIN:-}" ]; then
  [ -f "$GSM8K_TRAIN" ] && [ -f "${GSM8K_TEST:-}" ] || fail "GSM8K_TRAIN and GSM8K_TEST must both name existing files"
  DATA="train_file: $GSM8K_TRAIN
test_file: $GSM8K_TEST"
else
  HF_HUB_OFFLINE=1 "$PY" -c "import datasets; datasets.load_dataset('openai/gsm8k', 'main', split='test')" \
    >/dev/null 2>&1 || fail "GSM8K is not in the Hugging Face cache: python -c \"import datasets; datasets.load_dataset('openai/gsm8k', 'main')\" (or set GSM8K_TRAIN/GSM8K_TEST)"
  DATA="dataset: openai/gsm8k"
fi

# --- the teacher's server (stopped on exit) ---------------------------------------------------------
WORK=$(mktemp -d -t tutorkd-gpu-smoke-XXXXXX)
TEACHER_LOG="$WORK/teacher_server.log"
start=$(date +%s)
"$PY" -m vllm.entrypoints.openai.api_server --model "$TEACHER_MODEL" --served-model-name teacher \
  --host 127.0.0.1 --port "$TEACHER_PORT" --gpu-memory-utilization 0.45 --max-model-len 8192 \
  >"$TEACHER_LOG" 2>&1 &
TEACHER_PID=$!
trap 'kill "$TEACHER_PID" 2>/dev/null || true; wait "$TEACHER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  kill -0 "$TEACHER_PID" 2>/dev/null || { tail -20 "$TEACHER_LOG" >&2; fail "the teacher's server exited while starting"; }
  curl -sf "http://127.0.0.1:$TEACHER_PORT/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -sf "http://127.0.0.1:$TEACHER_PORT/health" >/dev/null || fail "the teacher's server is not up after 10 minutes"
teacher_start=$(( $(date +%s) - start ))

# --- a two-round run: the recipe with smaller held-out sets and budget ----------------------------
cat >"$WORK/env.yaml" <<EOF
# GPU smoke environment (written by benchmarks/gpu_smoke.sh); run with tutorkd teach.
kind: gsm8k
$DATA
test_per_skill: 50
val_per_skill: 20
budget: 1200
rounds: 2
max_errors_shown: 16
EOF
sed -e "s#base_url: .*#base_url: http://127.0.0.1:$TEACHER_PORT/v1#" \
  -e "s#per_round: .*#per_round: 600#" agents/gsm8k-llm-teacher.yaml >"$WORK/teacher.yaml"
sed -e "s#environment: .*#environment: $WORK/env.yaml#" -e "s#teacher: .*#teacher: $WORK/teacher.yaml#" \
  -e "s#model_path: .*#model_path: $STUDENT_MODEL#" recipes/gsm8k-qwen.yaml >"$WORK/run.yaml"
echo "runs_root: $WORK/runs" >>"$WORK/run.yaml"

start=$(date +%s)
"$PY" -m tutorkd.cli teach "$WORK/run.yaml"
total=$(( $(date +%s) - start ))

# --- two GPUs: one round with data-parallel, then tensor-parallel serving, training in 2 processes ----
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
if [ "${MULTI_GPU:-1}" != 0 ] && [ "$GPUS" -ge 2 ]; then
  sed -e "s#^rounds: .*#rounds: 1#" -e "s#^budget: .*#budget: 600#" "$WORK/env.yaml" >"$WORK/env-1round.yaml"
  for mode in dp tp; do
    "$PY" - "$WORK/run.yaml" "$WORK/run-$mode.yaml" "$mode" "$WORK/env-1round.yaml" "$WORK/runs-$mode" <<'EOF'
import sys

import yaml

src, dst, mode, env, runs = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg.update(environment=env, runs_root=runs)
cfg["student"]["train_processes"] = 2  # batch_size 16: 8 per GPU
cfg["backend"]["data_parallel_size" if mode == "dp" else "tensor_parallel_size"] = 2
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
EOF
    start=$(date +%s)
    "$PY" -m tutorkd.cli teach "$WORK/run-$mode.yaml"
    echo "$mode $(( $(date +%s) - start ))" >>"$WORK/multi_gpu_times"
  done
fi

# --- collect the per-phase times the loop wrote (rounds/r*/times.json) ----------------------------
"$PY" - "$WORK" "$OUT" "$teacher_start" "$total" "$STUDENT_MODEL" "$TEACHER_MODEL" <<'EOF'
import json, subprocess, sys
from pathlib import Path

import yaml

work, out, teacher_start, total, student, teacher = sys.argv[1:]
work = Path(work)


def phases(run_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("rounds/r*/times.json"))}


(run_dir,) = sorted((work / "runs").iterdir())
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                     capture_output=True, text=True, check=True).stdout.strip()
result = {"gpu": gpu, "student": student, "teacher": teacher, "environment": "gsm8k", "rounds": 2,
          "teacher_server_start_s": round(float(teacher_start), 1), "run_total_s": round(float(total), 1),
          "phases_s": phases(run_dir), "run_dir": str(run_dir)}
times = work / "multi_gpu_times"
if times.exists():
    result["multi_gpu"] = {}
    for line in times.read_text().splitlines():
        mode, seconds = line.split()
        (multi_dir,) = sorted((work / f"runs-{mode}").iterdir())
        launch = yaml.safe_load((multi_dir / "train" / "r1" / "accelerate.yaml").read_text())
        if not (multi_dir / "adapters" / "r1").is_dir() or launch["num_processes"] != 2:
            sys.exit(f"gpu_smoke: the {mode} run trained no adapter in 2 processes: {multi_dir}")
        result["multi_gpu"][mode] = {
            "serving": {"dp": "data_parallel_size: 2", "tp": "tensor_parallel_size: 2"}[mode],
            "training": f"train_processes: 2 ({launch['distributed_type']}, NCCL)", "rounds": 1,
            "run_total_s": float(seconds), "phases_s": phases(multi_dir), "run_dir": str(multi_dir)}
Path(out).parent.mkdir(parents=True, exist_ok=True)
Path(out).write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
EOF
echo "gpu_smoke: wrote $OUT"
