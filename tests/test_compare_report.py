"""``tutorkd compare`` and ``tutorkd report`` on synthetic run directories (2 teachers x 3 seeds).

The runs hold the files the loop writes, built from the real records (``tests/synthetic_runs.py``).
The Chromium test opens the report in headless Chromium and checks that every image decodes; it is
skipped when ``chromium`` is not on PATH (Debian: ``apt-get install -y chromium``).

Run: ``.venv/bin/pytest tests/test_compare_report.py -q``
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from synthetic_runs import ENV, GAINS, PER_ROUND, make_run, make_runs
from typer.testing import CliRunner

from tutorkd.cli import app
from tutorkd.config import ConfigError, RunConfig, TeacherConfig
from tutorkd.evals.accounting import load_run
from tutorkd.evals.compare import Comparison, compare, pair_rows
from tutorkd.evals.report import STUDENT_MODEL_FILES, write_report
from tutorkd.loop import round_dir
from tutorkd.rundir import save_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, domain) -> list[Path]:
    return make_runs(tmp_path_factory.mktemp("runs"), domain)


def test_load_run_reads_every_cost_the_loop_writes(runs):
    run = load_run(runs[0])
    assert (run.teacher, run.seed, run.level) == ("uniform", 0, "skill_tree")
    assert len(run.rounds) == 4 and run.rounds[0].student.name == "base"
    assert run.examples == (3 * (PER_ROUND + 2), 3 * PER_ROUND, 3 * PER_ROUND)
    assert run.rounds[1].rejected == {"duplicate": 2}  # zero counts are dropped
    assert run.seconds == pytest.approx(4 * 4.0 + 3 * 20.6 + 0.01 * (1 + 2 + 3))
    assert run.tokens is None
    assert run.gain == pytest.approx(run.curve[-1] - run.curve[0])


def test_compare_summarises_each_teacher_over_seeds_and_pairs_them(runs):
    accounts = [load_run(r) for r in runs]
    cmp = compare(accounts)
    by = {t.teacher: t for t in cmp.teachers}
    assert set(by) == set(GAINS)
    fast, slow = by["error_driven"], by["uniform"]
    assert fast.seeds == slow.seeds == (0, 1, 2)
    assert len(fast.per_round) == 4
    assert fast.final.estimate > slow.final.estimate and fast.auc.estimate > slow.auc.estimate
    for t in cmp.teachers:
        assert t.final.low <= t.final.estimate <= t.final.high
        gains = [a.gain for a in accounts if a.teacher == t.teacher]
        # mean trained examples per run over the mean gain in percentage points
        assert t.examples_per_point == pytest.approx(3 * PER_ROUND / (100 * sum(gains) / 3))
    assert fast.examples_per_point < slow.examples_per_point
    (pair,) = cmp.pairs
    assert (pair.a, pair.b, pair.seeds) == ("error_driven", "uniform", (0, 1, 2))
    assert pair.final.mean_diff > 0.1 and pair.final.interval.low > 0
    assert pair.final.p_sign_flip == pytest.approx(0.25)  # the best 3 seeds can give
    _, (row,) = pair_rows(cmp)
    assert row[3] == "- (n<6)" and row[4] == "0.250"  # 3 seeds: no bootstrap p-value is shown


def test_compare_rejects_runs_that_cannot_be_compared(runs, tmp_path, domain):
    accounts = [load_run(r) for r in runs]
    with pytest.raises(ConfigError, match="two runs with seed 0"):
        compare([accounts[0], accounts[0]])
    other = make_run(tmp_path, "uniform", 5, domain)
    cfg = RunConfig(
        environment=ENV.model_copy(update={"split_seed": 7}),
        teacher=TeacherConfig(name="uniform", policy="uniform"),
        seed=5,
    )
    save_config(cfg, other)
    with pytest.raises(ConfigError, match="different held-out sets"):
        compare([accounts[0], load_run(other)])


def test_teacher_tokens_are_costed_per_point_when_an_llm_teacher_ran(tmp_path, domain):
    run = load_run(make_run(tmp_path, "error_driven_llm", 0, domain))
    assert run.tokens == (3000, 750)
    (summary,) = compare([run]).teachers
    assert summary.tokens == (3000.0, 750.0)
    assert summary.tokens_per_point == pytest.approx(3750 / (100 * run.gain))


def test_cli_compare_prints_tables_and_writes_json(runs, tmp_path):
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(app, ["compare", *map(str, runs), "--json", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "error_driven" in result.output and "paired tests" in result.output
    cmp = Comparison.model_validate_json(out.read_text())
    assert len(cmp.teachers) == 2 and len(cmp.pairs) == 1


def test_cli_compare_and_report_fail_cleanly_on_a_folder_that_is_not_a_run(tmp_path):
    for command in ("compare", "report"):
        result = CliRunner().invoke(app, [command, str(tmp_path)])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())  # rich wraps lines at the console width
        assert "not a tutorkd run directory" in text and "Traceback" not in text


def test_runs_of_a_plugin_teacher_are_read_without_its_code_but_not_resumed(runs, tmp_path, domain):
    """Comparing and reporting read what a run wrote: a run whose policy, engine and student came from
    plug-ins that are no longer importable (another machine, another checkout) still loads, compares
    and reports; resuming it needs the code and exits 2 naming the import."""
    import yaml

    import tutorkd

    run = make_run(tmp_path, "mylab-curriculum", 0, domain)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["teacher"].update(policy={"import": "gone_lab.policies:Curriculum", "focus": 2},
                            engine={"import": "gone_lab.engines:Drills"})
    saved["student"] = {"kind": "plugin", "import": "gone_lab.students:Learner", "threshold": 3}
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))

    assert load_run(run).teacher == "mylab-curriculum"
    policy = tutorkd.load_run(run).config.teacher.policy
    assert (policy.import_path, policy.options()) == ("gone_lab.policies:Curriculum", {"focus": 2})
    out = tmp_path / "cmp.json"
    compared = CliRunner().invoke(app, ["compare", str(run), *map(str, runs[:3]), "--json", str(out)])
    assert compared.exit_code == 0, compared.output
    cmp = Comparison.model_validate_json(out.read_text())
    assert {t.teacher for t in cmp.teachers} == {"mylab-curriculum", "uniform"}
    reported = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    assert "mylab-curriculum" in (tmp_path / "r.html").read_text()

    resumed = CliRunner().invoke(app, ["teach", "--resume", str(run)], terminal_width=200)
    assert resumed.exit_code == 2, resumed.output
    text = " ".join(resumed.output.split())
    assert "teacher.policy" in text and "cannot import 'gone_lab.policies'" in text
    assert "cannot import 'gone_lab.students'" in text
    assert "Traceback" not in text
    with pytest.raises(ConfigError, match="gone_lab"):
        tutorkd.resume(run)


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_report_is_self_contained_and_has_every_section(runs, tmp_path):
    profile = round_dir(runs[0], 1) / STUDENT_MODEL_FILES["Skill profile"]
    profile.write_text(
        json.dumps(
            {
                "add.carry": {"mastery": 0.4, "note": "forgets the carry"},
                "cmp.lead": {"mastery": 0.95, "note": "solid"},
            }
        )
    )
    try:
        html = write_report(runs, tmp_path / "report.html").read_text()
    finally:
        profile.unlink()
    images = _images(html)
    assert len(images) == 1 + len(runs)  # teacher curves + one learning-curve figure per run
    assert all(png.startswith(PNG_MAGIC) and len(png) > 5000 for png in images)
    # Self-contained: no script, stylesheet or image is fetched from anywhere.
    assert not re.search(r'(src|href)="(?!data:)', html) and "<script" not in html and "@import" not in html
    for heading in (
        "Comparison of teachers",
        "Paired tests",
        "Per-skill learning curves",
        "Skill tree",
        "Teaching costs",
        "Generated data",
        "Contamination",
        "Skill profile",
    ):
        assert heading in html
    assert "forgets the carry" in html  # the student-model view is rendered, once
    assert html.count("Skill profile") == 1
    assert (
        "No student-model files of these kinds in this run: calibration.json, diagnosis.json, principles.json"
        in html
    )
    assert "R:" in html and "A:" in html  # sample training examples
    assert "hsl(" in html  # skill tree cells coloured by accuracy


def test_report_shows_planted_contamination(tmp_path, domain):
    from synthetic_runs import heldout

    test_question = heldout(domain).test["add.carry"][0].question
    a, b = test_question[:-1].split("+")
    run = make_run(tmp_path, "uniform", 0, domain, leak=(test_question, f"{b}+{a}="))
    html = write_report([run], tmp_path / "r.html").read_text()
    assert "OVERLAP FOUND" in html and test_question in html


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not on PATH (Debian: apt-get install -y chromium); CI installs it",
)
def test_report_renders_in_headless_chromium_with_all_images_loaded(runs, tmp_path):
    html = write_report(runs, tmp_path / "report.html").read_text()
    # Why an injected probe: the report itself has no script; this copy records, after load, whether
    # every image decoded, into the DOM that --dump-dom prints.
    probe = (
        "<script>window.addEventListener('load', () => { document.body.setAttribute('data-images', "
        "JSON.stringify([...document.images].map(i => i.complete && i.naturalWidth > 0))); });</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(r'data-images="([^"]*)"', dom)
    assert match, f"the probe did not run; DOM starts {dom[:300]!r}"
    loaded = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(loaded) == 1 + len(runs) and all(loaded)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            *flags,
            "--window-size=1280,1600",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280)
    assert len({tuple(p) for p in pixels[::16, ::16].reshape(-1, pixels.shape[-1]).tolist()}) > 20


def test_json_view_renders_nested_teacher_views_as_tables():
    from tutorkd.evals.html import json_view

    diagnosis = {
        "attempts": 90,
        "wrong": 12,
        "bugs": [
            {"bug_id": "add.forgot_carry", "matched": 7, "examples": ["p1", "p2"]},
            {"bug_id": "sub.smaller_from_larger", "matched": 3, "examples": []},
        ],
        "model": {"skills": {"add.carry": {"p": 0.25}, "cmp.lead": {"p": 0.9}}, "note": "<b>raw</b>"},
    }
    html = json_view(diagnosis)
    assert html.count("<table>") == 4  # scalars, bugs, model's scalars, model.skills
    assert "<th>bug_id</th><th>matched</th><th>examples</th>" in html and "p1, p2" in html
    assert "<td>0.250</td>" in html and "&lt;b&gt;raw&lt;/b&gt;" in html  # formatted and escaped
    many = json_view([{"i": i} for i in range(100)])
    assert "40 more rows not shown" in many


def test_runs_whose_heldout_sets_cannot_be_rebuilt_are_flagged_not_passed(tmp_path, domain):
    from tutorkd.evals.runs import HELDOUT_FILE, HeldOutMismatch, run_heldout
    from tutorkd.io import read_json, write_json
    from tutorkd.schema import RoundEval

    run = make_run(tmp_path, "uniform", 0, domain)
    sets = run_heldout(run)  # rebuilt from the config, matching the recorded validation problems
    base_eval = round_dir(run, 0) / "eval.json"
    record = read_json(base_eval, RoundEval)
    write_json(base_eval, record.model_copy(update={"val_attempts": record.val_attempts[1:]}))
    with pytest.raises(HeldOutMismatch, match="another version"):
        run_heldout(run)
    assert "<b>Not checked</b>" in write_report([run], tmp_path / "r.html").read_text()
    result = CliRunner().invoke(
        app, ["eval", str(REPO / "evals/arithmetic-quick.yaml"), "--student", f"{run}:base"]
    )
    assert result.exit_code == 2 and "another version" in " ".join(result.output.split())
    write_json(run / HELDOUT_FILE, sets)  # a run that saved its sets needs no rebuilding
    assert run_heldout(run) == sets
