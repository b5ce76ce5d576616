"""Fingerprint teaching runs, to prove a refactor leaves behaviour unchanged.

Runs ``tutorkd teach`` through its command line (so the same script measures any version of the code)
for the default run and one round each of the STAT-Syn, TPD and ToM teachers, then records the sha256 of
every round's ``data.jsonl`` and ``eval.json`` and of every adapter file. A run's own name and folder
(which hold its start time) are masked in the text files, and ``adapter_config.json`` is compared as
JSON with its lists sorted (PEFT writes ``target_modules`` from a set, whose order changes with Python's
hash seed from one process to the next). Two fingerprints taken on one machine with the same seed must
be equal, file for file:

    python benchmarks/fingerprint.py --out before.json      # on the old code
    python benchmarks/fingerprint.py --out after.json       # on the new code
    python benchmarks/fingerprint.py --diff before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {
    "default": [],
    "stat-syn": ["--teacher", "agents/stat-syn.yaml", "--rounds", "1"],
    "tpd": ["--teacher", "agents/tpd.yaml", "--rounds", "1"],
    "tom": ["--teacher", "agents/tom.yaml", "--rounds", "1"],
}


def canonical(path: Path, run_dir: Path) -> bytes:
    """What is compared of one file: its bytes, with the run's folder and name masked in text files and
    ``adapter_config.json`` as sorted JSON."""
    if path.suffix == ".safetensors":
        return path.read_bytes()
    text = path.read_text().replace(str(run_dir.resolve()), "<RUN_DIR>").replace(str(run_dir), "<RUN_DIR>")
    text = text.replace(run_dir.name, "<RUN>")
    if path.name == "adapter_config.json":
        fields = json.loads(text)
        text = json.dumps({k: sorted(v) if isinstance(v, list) else v for k, v in fields.items()},
                          sort_keys=True)
    return text.encode()


def fingerprint(run_dir: Path) -> dict[str, str]:
    """sha256 of each round's data and evaluation and of each adapter file, by path in the run."""
    files = sorted([*run_dir.glob("rounds/r*/data.jsonl"), *run_dir.glob("rounds/r*/eval.json"),
                    *(p for p in run_dir.glob("adapters/r*/*") if p.is_file())])
    return {str(p.relative_to(run_dir)): hashlib.sha256(canonical(p, run_dir)).hexdigest() for p in files}


def teach(name: str, args: list[str], root: Path) -> dict:
    """Run one ``tutorkd teach`` into a fresh runs root and fingerprint what it wrote."""
    runs_root = root / name
    cmd = [sys.executable, "-c", "from tutorkd.cli import main; main()", "teach", *args,
           "--runs-root", str(runs_root)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    (run_dir,) = list(runs_root.iterdir())
    return {"args": args, "seconds": round(seconds, 1), "files": fingerprint(run_dir)}


def diff(a: Path, b: Path) -> int:
    """Print every file whose hash differs between two fingerprints; the number of differences."""
    left, right = json.loads(a.read_text())["runs"], json.loads(b.read_text())["runs"]
    bad = 0
    for name in sorted(set(left) | set(right)):
        fa, fb = left.get(name, {}).get("files", {}), right.get(name, {}).get("files", {})
        for path in sorted(set(fa) | set(fb)):
            same = fa.get(path) == fb.get(path)
            bad += not same
            print(f"{'same' if same else 'DIFFERENT'}  {name}/{path}  {fa.get(path, '-')[:12]} "
                  f"{fb.get(path, '-')[:12]}")
    print(f"{bad} differences")
    return bad


def main() -> None:
    """Fingerprint the runs (``--out``) or compare two fingerprints (``--diff A B``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--diff", nargs=2, type=Path)
    args = parser.parse_args()
    if args.diff:
        sys.exit(1 if diff(*args.diff) else 0)
    if args.out is None:
        parser.error("give --out FILE or --diff A B")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tutorkd-fingerprint-") as tmp:
        runs = {name: teach(name, RUNS[name], Path(tmp)) for name in args.runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"commit": commit, "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
