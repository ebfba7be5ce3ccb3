"""The otter-grader assignments in ``assignments/``: each master notebook is assigned with
``otter assign`` and graded with ``otter run`` (no Docker), as the assignments' README tells an
instructor to do. The solution must score full marks, the blank student notebook nothing, and the
hidden tests must not reach the students. Offline: the notebooks install nothing when ddpm_lib and
otter-grader are importable.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["forward_process", "posterior", "sampling", "fid_kid"]


def _otter(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "otter", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, what):
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{out[-4000:]}"
    return out


def _scores(results_json):
    tests = json.loads(results_json.read_text())["tests"]
    per_question = {t["name"]: (t["score"], t["max_score"]) for t in tests if "max_score" in t}
    return per_question, sum(s for s, _ in per_question.values()), sum(m for _, m in per_question.values())


def _test_cases(test_file):
    """(hidden, points) of each test case in an otter exception-format test file."""
    return [(h == "True", float(p)) for p, h in
            re.findall(r"@test_case\(points=([\d.]+), hidden=(True|False)", test_file.read_text())]


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assignment_grades_solution_full_and_blank_zero(name, tmp_path):
    master = ROOT / "assignments" / name / f"{name}.ipynb"
    dist = tmp_path / "dist"
    _finish(_otter("assign", "--no-run-tests", str(master), str(dist), cwd=tmp_path), "otter assign")

    # Students get the public tests only; the autograder has every test of every question.
    student_tests = sorted((dist / "student" / "tests").glob("q*.py"))
    grader_tests = sorted((dist / "autograder" / "tests").glob("q*.py"))
    assert [p.name for p in student_tests] == [p.name for p in grader_tests] and grader_tests
    for stu, ag in zip(student_tests, grader_tests):
        public, every = _test_cases(stu), _test_cases(ag)
        assert public and not any(h for h, _ in public), f"{stu.name}: students need public tests only"
        assert any(h for h, _ in every), f"{ag.name}: no hidden test"
        assert sum(not h for h, _ in every) == len(public)
    (zip_path,) = (dist / "autograder").glob(f"{name}-autograder_*.zip")

    # Grade the solution and the blank student notebook side by side (two kernels, two cores).
    runs = {}
    for which, notebook in (("solution", dist / "autograder" / f"{name}.ipynb"),
                            ("student", dist / "student" / f"{name}.ipynb")):
        out_dir = tmp_path / which
        out_dir.mkdir()
        runs[which] = (out_dir, _otter("run", "--no-logo", "-a", str(zip_path), "-o", str(out_dir),
                                       str(notebook), cwd=tmp_path))
    logs = {which: _finish(proc, f"otter run ({which})") for which, (_, proc) in runs.items()}

    questions, score, possible = _scores(runs["solution"][0] / "results.json")
    assert possible == sum(p for f in grader_tests for _, p in _test_cases(f)) > 0
    assert score == possible, f"the solution scores {score} of {possible}: {questions}\n{logs['solution'][-3000:]}"

    questions, score, possible_blank = _scores(runs["student"][0] / "results.json")
    assert possible_blank == possible
    assert score == 0, f"the blank student notebook scores {score} of {possible}: {questions}"
