"""The fast slice of the fuzz suite (the long run is `make fuzz`, in CI) and tests of the fuzz driver itself."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # (pytest's importlib mode does not put the repository on sys.path)
    sys.path.insert(0, str(REPO_ROOT))

from tests.fuzz import driver  # noqa: E402

#: cases of the slice in the normal test run (about 5 s on 2 cores; longer under AddressSanitizer)
SLICE_CASES = int(os.environ.get("OCCRECON_FUZZ_CASES", "500"))


def test_fuzz_slice_has_no_crash_hang_or_broken_invariant():
    out = io.StringIO()
    summary = driver.fuzz(seed=0, cases=SLICE_CASES, jobs=2, batch=200, out=out)
    print(summary.format())
    assert summary.failures == [], out.getvalue() + summary.format()
    assert summary.results + sum(summary.exceptions.values()) == SLICE_CASES
    assert set(summary.per_op) == set(driver.default_ops())
    assert summary.results > SLICE_CASES // 4 and sum(summary.exceptions.values()) > SLICE_CASES // 4


def test_every_registered_op_has_a_direct_case():
    import torch

    import occrecon  # noqa: F401  (registers the ops)

    registered = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("occrecon::")}
    fuzzed = {n[len("direct."):] for n in driver.default_ops() if n.startswith("direct.")}
    assert registered == fuzzed
    public = {"rasterize", "interpolate", "antialias", "antialias_construct_topology_hash", "fragments",
              "neighbour_min", "sh_shade", "vertex_normals", "tri_mutation"}
    assert public <= set(driver.default_ops())


def test_a_case_replays_identically():
    logs = []
    for _ in range(2):
        lines: list[str] = []
        results = [driver.run_case(5, i, op, lines.append) for i, op in ((3, "interpolate"), (4, "direct.antialias"),
                                                                        (9, "tri_mutation"))]
        logs.append((lines, results))
    assert logs[0] == logs[1] and len(logs[0][0]) >= 3


def _selftest(ops: list[str], cases: int, **kw) -> driver.Summary:
    """The driver on its self-test ops. Under AddressSanitizer their deliberate signals must kill the child as
    they do elsewhere, and must not leave a report where make sanitize-check looks for real ones."""
    options = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o and not o.startswith("log_path=")]
    env = {"ASAN_OPTIONS": ":".join(options + ["handle_segv=0", "handle_abort=0"])}
    return driver.fuzz(seed=0, cases=cases, ops=ops, out=io.StringIO(), env=env, **kw)


def test_driver_pins_a_crash_to_its_case_and_runs_the_rest():
    summary = _selftest(["selftest.crash"], 10, batch=10)
    assert [(f.index, f.kind, f.message) for f in summary.failures] == [
        (3, "crash", "crash (SIGSEGV), alone"), (8, "crash", "crash (SIGSEGV), alone")]
    assert summary.results == 8 and summary.crashes == 2
    assert summary.failures[0].log == ["selftest.crash: SIGSEGV on case 3 mod 5"]


def test_driver_bisects_a_crash_that_needs_an_earlier_case():
    summary = _selftest(["selftest.poison"], 7, batch=7)
    (f,) = summary.failures
    assert (f.index, f.kind) == (5, "crash")
    assert f.message == "crash (SIGABRT), only after cases 2:selftest.poison 3:selftest.poison 4:selftest.poison"
    assert summary.results == 6


def test_driver_kills_a_hang():
    summary = _selftest(["selftest.hang"], 3, timeout=1.0)
    assert [(f.index, f.kind) for f in summary.failures] == [(1, "hang")]
    assert summary.results == 2


def test_driver_counts_exceptions_and_in_child_findings():
    summary = _selftest(["selftest.raise"], 6, jobs=2, batch=2)
    assert summary.exceptions == {"ValueError": 3} and summary.results == 3 and summary.failures == []
    summary = _selftest(["selftest.invariant"], 2)
    assert [(f.index, f.kind, f.message) for f in summary.failures] == [(0, "invariant", "selftest invariant")]
    assert "crashes 0, hangs 0, sanitizer reports 0, other failures 1 (invariant 1)" in summary.format()


@pytest.mark.parametrize("argv, message", [
    (["--ops", "nope"], "--ops 'nope' matches no op"),
    (["--case", "x"], "invalid literal"),
])
def test_cli_errors_are_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz", *argv], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
