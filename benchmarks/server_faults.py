"""Faults of the real serving path: a ``vllm serve`` SIGKILLed mid-request, and the shared model cache.

Server faults (``server_faults`` in ``reliability_vllm.json``). The tiny student (``reliability.py``'s)
answers through the OpenAI client (``backend: openai``) from a real ``vllm serve`` on this CPU, either an
external server the run's config names (``base_url``) or the one tutorkd starts for the run. Per
scenario: one uninterrupted reference run; then the same run again, and once the target node has sent
requests to the server (counted in the server's access log), the server's whole process group is
SIGKILLed. The client retries with backoff (the ``openai`` client's, counted in ``run.log``), the run
stops with its resume command, and is checked for half-written files and surviving processes. The
external server is started again on the same port (tutorkd's own server is started again by the resumed
run), ``tutorkd teach --resume`` finishes the run, and it is compared with the reference (lost and
duplicated examples, the bytes of every data file, adapter and evaluation; ``teach_harness.compare``).
The scenarios kill during evaluation (the student answering the validation and test sets) and during
generation (the ToM teacher's quiz: the student generating answers for the teacher's mental model).

Cache faults (``cache_faults``). The SmolLM2 GGUF conversion (``prepare_model``) into an empty cache
folder by separate processes: two at once (one builds, one waits on the lock; both get the same
verified files), one SIGKILLed while it holds the lock and builds (the next one builds), and an entry
whose weights were truncated (detected by the manifest's sizes and rebuilt).

    .venv/bin/python benchmarks/server_faults.py [--only server|cache] [--scenarios NAME ...]
        [--into benchmarks/results/reliability_vllm.json]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from reliability import RESULTS, TINY_STUDENT  # noqa: E402
from teach_harness import Teach, compare, descendants, only_run, pending, processes, stray_temp_files  # noqa: E402

RESUME_HINT = "continue it with: tutorkd teach --resume"
REQUEST_LINE = "POST /v1/completions"
SCENARIOS = {
    "external-evaluate": {"server": "external", "teacher": "uniform", "slot": ("evaluate", 1),
                          "after": ("train", 1)},
    "external-generate": {"server": "external", "teacher": "tom", "slot": ("plan", 1),
                          "after": ("evaluate", 0)},
    "owned-evaluate": {"server": "owned", "teacher": "uniform", "slot": ("evaluate", 1),
                       "after": ("train", 1)},
    "owned-generate": {"server": "owned", "teacher": "tom", "slot": ("plan", 1), "after": ("evaluate", 0)},
}
"""Where the server dies: after the CLI line of ``after``, once the ``slot`` node has sent requests."""
TOM = {"per_round": 60, "tom": {"quiz_per_skill": 4, "check_per_skill": 2, "candidates": 4, "seed": 0}}


def write_config(root: Path, student: dict, teacher: str, backend: dict) -> Path:
    """``reliability.py``'s small 2-round run with ``teacher`` and ``backend``, as ``root/run.yaml``."""
    cfg = common.run_config(env="arithmetic-tree", teacher=teacher, seed=0, runs_root=root / "runs",
                            environment={"test_per_skill": 10, "val_per_skill": 10, "budget": 120,
                                         "rounds": 2},
                            teacher_fields=TOM if teacher == "tom" else {"per_round": 60}, student=student,
                            backend=backend)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def requests_logged(log: Path) -> int:
    """Completion requests the server has answered or failed so far (uvicorn's access log)."""
    return log.read_text(errors="replace").count(REQUEST_LINE) if log.is_file() else 0


def owned_server(proc: Teach) -> int:
    """The pid of the ``vllm serve`` a teach process started (its descendant running the API server)."""
    family = descendants(proc.proc.pid)
    found = [p["pid"] for p in processes() if p["pid"] in family and "api_server" in p["cmdline"]]
    if len(found) != 1:
        raise RuntimeError(f"expected one vllm serve under the run, found {found}")
    return found[0]


def start_server(base: Path, port: int, log: Path):
    """An external ``vllm serve`` of the tiny base on ``port`` (rank-8 adapters, seed 0)."""
    from tutorkd.llm.vllm_server import VLLMServer

    return VLLMServer(base, max_lora_rank=TINY_STUDENT["lora_rank"], max_model_len=128, seed=0, port=port,
                      log_file=log)


def scenario(name: str, spec: dict, base: Path, student: dict, root: Path, wait_requests: int) -> dict:
    """One server-fault scenario end to end (see the module docstring); its figures."""
    from tutorkd.llm.vllm_server import free_port

    port, server_log, server = free_port(), root / "server.log", None
    backend = {"kind": "openai"}
    if spec["server"] == "external":
        backend["base_url"] = f"http://127.0.0.1:{port}/v1"
        server = start_server(base, port, server_log)
    out: dict = {"scenario": name, "server": spec["server"], "teacher": spec["teacher"],
                 "target": {"node": spec["slot"][0], "round": spec["slot"][1]}}
    try:
        ref = Teach(str(write_config(root / "ref", student, spec["teacher"], backend)))
        ref.finish()
        ref_dir = only_run(root / "ref")
        out["reference_processes_left"] = len(ref.leftovers(ref_dir))
        proc = Teach(str(write_config(root / "kill", student, spec["teacher"], backend)))
        proc.wait_for(spec["after"])
        run_dir = only_run(root / "kill")
        pid = owned_server(proc) if server is None else None
        log = run_dir / "vllm_server.log" if server is None else server_log
        start = requests_logged(log)
        deadline = time.monotonic() + 300
        while requests_logged(log) < start + wait_requests:
            if time.monotonic() > deadline or proc.proc.poll() is not None:
                raise RuntimeError(f"{name}: the node sent no {wait_requests} requests to kill the server in")
            time.sleep(0.01)
        out["requests_before_kill"] = requests_logged(log) - start
        killed = time.monotonic()
        if server is None:
            os.killpg(pid, signal.SIGKILL)
        else:
            server.crash()
        code = proc.wait()
        text = "\n".join(line for _, line in proc.lines)
        retries = (run_dir / "run.log").read_text(errors="replace").count("Retrying request")
        hit = pending(run_dir)
        out["stopped"] = {"exit_code": code, "seconds_after_kill": round(time.monotonic() - killed, 1),
                          "resume_command_printed": RESUME_HINT in text, "retries_logged": retries,
                          "hit": {"node": hit[0], "round": hit[1]},
                          "temp_files_left": stray_temp_files(run_dir),
                          "processes_left": len(proc.leftovers(run_dir))}
        if server is not None:
            server = start_server(base, port, root / "server-restarted.log")
        again = Teach("--resume", str(run_dir))
        again.finish()
        out["resumed_processes_left"] = len(again.leftovers(run_dir))
        result = compare(ref_dir, run_dir)
        out["comparison"] = {k: result[k] for k in (
            "examples", "lost", "lost_by_question", "extra", "duplicated", "identical", "examples_identical",
            "evals_identical", "differing_files", "max_metric_diff", "max_confidence_diff", "eval_diffs",
            "stray_temp_files")}
        out["finished_on_resume"] = True
    finally:
        if server is not None:
            server.close()
    out["ok"] = (out["stopped"]["exit_code"] != 0 and out["stopped"]["resume_command_printed"]
                 and out["finished_on_resume"] and not out["stopped"]["temp_files_left"]
                 and out["comparison"]["lost"] == out["comparison"]["duplicated"] == 0)
    return out


CACHE_WORKER = """
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from tutorkd.students.models import prepare_model
t = time.monotonic()
path = prepare_model("smollm2-135m-instruct", sys.argv[1])
print(json.dumps({"path": str(path), "seconds": round(time.monotonic() - t, 1)}))
"""


def cache_worker(cache: Path) -> subprocess.Popen:
    """A separate process preparing SmolLM2 into the cache folder ``cache``."""
    return subprocess.Popen([sys.executable, "-c", CACHE_WORKER, str(cache)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def outcome(worker: subprocess.Popen) -> dict:
    """Whether a cache worker built the entry (converted), waited for another builder, saw corruption."""
    stdout, stderr = worker.communicate(timeout=900)
    if worker.returncode != 0:
        raise RuntimeError(f"cache worker exited {worker.returncode}:\n{stderr[-2000:]}")
    return {**json.loads(stdout.strip().splitlines()[-1]), "built": "converted smollm2" in stderr,
            "waited_for_another_builder": "after waiting for another builder" in stderr,
            "found_corrupt": "is corrupt" in stderr}


def verified(entry: Path) -> bool:
    """Whether the entry has its manifest and every file it lists has its size and sha256."""
    from tutorkd.cache import MANIFEST_FILE, entry_problem

    return (entry / MANIFEST_FILE).is_file() and entry_problem(entry) is None


def cache_faults(root: Path) -> dict:
    """The three cache scenarios of the module docstring, each in a fresh cache folder."""
    together = [cache_worker(root / "together") for _ in range(2)]
    both = [outcome(w) for w in together]
    entry = Path(both[0]["path"])
    out = {"two_at_once": {"builds": sum(o["built"] for o in both),
                           "waited": sum(o["waited_for_another_builder"] for o in both),
                           "same_entry": both[0]["path"] == both[1]["path"], "verified": verified(entry),
                           "seconds": [o["seconds"] for o in both]}}
    cache = root / "killed"
    victim = cache_worker(cache)
    while not list(cache.glob(".tmp-*")) and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(2.0)  # Why: well inside the conversion (its temporary folder is being written)
    victim.kill()
    victim.wait()
    after = outcome(cache_worker(cache))
    out["killed_while_building"] = {"victim_exit": victim.returncode, "next_built": after["built"],
                                    "verified": verified(Path(after["path"])),
                                    "temp_folders_left": len(list(cache.glob(".tmp-*")))}
    weights = entry / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    repaired = outcome(cache_worker(root / "together"))
    out["truncated_weights"] = {"bytes_before": size, "truncated_to": size // 2,
                                "found_corrupt": repaired["found_corrupt"], "rebuilt": repaired["built"],
                                "verified": verified(Path(repaired["path"]))}
    out["ok"] = (out["two_at_once"]["builds"] == 1 and out["two_at_once"]["same_entry"]
                 and out["two_at_once"]["verified"] and after["built"]
                 and out["killed_while_building"]["verified"] and repaired["found_corrupt"]
                 and repaired["built"] and out["truncated_weights"]["verified"])
    return out


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--only", choices=("server", "cache"), default=None)
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--wait-requests", type=int, default=8,
                        help="requests the target node sends before the server is killed")
    parser.add_argument("--into", type=Path, default=RESULTS["vllm"],
                        help="result JSON to add the sections to (created if missing)")
    args = parser.parse_args()
    from tutorkd.config import TinyStudentConfig
    from tutorkd.environments.arithmetic import ArithmeticDomain
    from tutorkd.students.pretrain import pretrain_base

    cache = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    student = {**TINY_STUDENT, "cache_dir": str(cache / "test-students")}
    root = Path(tempfile.mkdtemp(prefix="tutorkd-server-faults-"))
    result = json.loads(args.into.read_text()) if args.into.is_file() else {"benchmark": "reliability"}
    if args.only != "cache":
        domain = ArithmeticDomain()
        base = pretrain_base(TinyStudentConfig(**student), domain, domain.default_pretrain_mix)
        t0, runs = time.monotonic(), []
        for name in args.scenarios:
            runs.append(scenario(name, SCENARIOS[name], base, student, root / name, args.wait_requests))
            print(json.dumps(runs[-1]), flush=True)
        summary = {"scenarios": len(runs), "ok": sum(r["ok"] for r in runs),
                   "stopped_with_resume_command": sum(r["stopped"]["resume_command_printed"] for r in runs),
                   "finished_on_resume": sum(r["finished_on_resume"] for r in runs),
                   "lost": sum(max(r["comparison"]["lost"], r["comparison"]["lost_by_question"])
                               for r in runs),
                   "duplicated": sum(r["comparison"]["duplicated"] for r in runs),
                   "identical": sum(r["comparison"]["identical"] for r in runs),
                   "processes_left": sum(r["stopped"]["processes_left"] + r["resumed_processes_left"]
                                         for r in runs),
                   "wall_s": round(time.monotonic() - t0, 1)}
        result["server_faults"] = {"date": time.strftime("%Y-%m-%d"), "summary": summary, "runs": runs,
                                   "setup": {"student": student, "eval": "10 val + 10 test per skill",
                                             "rounds": 2, "budget": 120, "tom": TOM,
                                             "wait_requests": args.wait_requests,
                                             "client": "openai, max_retries 5 (default backoff)"}}
        common.print_table({k: {"value": v} for k, v in summary.items()}, title="server faults")
    if args.only != "server":
        result["cache_faults"] = {"date": time.strftime("%Y-%m-%d"), **cache_faults(root / "cache")}
        print(json.dumps(result["cache_faults"], indent=1))
    common.write_result(result, args.into)
    print(f"run directories under {root}")


if __name__ == "__main__":
    main()
