"""The fuzz driver: runs cases in child processes, catches crashes, hangs and sanitizer reports, and pins each one
down to the seed, case number and op that reproduce it.

A case is ``(seed, index, op)``; its arguments come from ``numpy.random.default_rng([seed, index, crc32(op)])``
only, so a case replays alone (``--case INDEX:OP``) exactly as it ran in its batch. The parent writes a plan (the
cases of one batch) for a child, which appends one JSON line per event to a results file: ``start``, the case's
``log`` lines (each call and its arguments, written before the call) and ``end`` with the outcome. When a child
dies (signal, non-zero exit, sanitizer report) or stops making progress (hang), the case in progress is re-run
alone; if it passes alone, the batch's earlier cases are bisected to the shortest run of cases that still kills
the child. The remaining cases of the batch then run in a fresh child.

This module imports no torch: the self-test ops below exercise the driver itself in milliseconds.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import fnmatch
import glob
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

import numpy as np

#: Exceptions a case may end in: a refused input. Anything else is a failure ("bad-exception").
ALLOWED_EXCEPTIONS = (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError)
#: Peak-RSS growth of one case above which it counts as a "memory" failure (huge inputs must be refused first).
MEMORY_LIMIT_BYTES = 1536 << 20
#: Address-space limit of a child outside a sanitizer build: a stray huge allocation fails instead of swapping.
ADDRESS_SPACE_LIMIT = 16 << 30
REPO_ROOT = Path(__file__).resolve().parents[2]


class Finding(Exception):
    """A case's failure found inside the child: ``kind`` is one of invariant, accepted-invalid, refused-valid,
    bad-exception, memory, generator."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def under_sanitizer() -> bool:
    """True when this process runs with AddressSanitizer preloaded (make sanitize-check)."""
    return "libasan" in os.environ.get("LD_PRELOAD", "")


def case_rng(seed: int, index: int, op: str) -> np.random.Generator:
    """The one source of randomness of case ``index`` of ``op`` under ``seed``."""
    return np.random.default_rng([seed, index, zlib.crc32(op.encode())])


def op_for(seed: int, index: int, ops: Sequence[str]) -> str:
    """The op of case ``index``: every ``len(ops)`` consecutive cases cover each op once, in a seeded order."""
    n = len(ops)
    order = np.random.default_rng([seed, index // n, 7]).permutation(n)
    return ops[int(order[index % n])]


# ------------------------------------------------------------------------------------------- self-test ops
# They exercise the driver (tests/fuzz/test_fuzz.py), never torch, and are only run when named explicitly.
_POISONED = False


def _selftest_ok(g) -> None:
    g.note("selftest.ok: nothing")


def _selftest_raise(g) -> None:
    g.note("selftest.raise: ValueError on odd cases")
    if g.index % 2:
        raise ValueError("odd case refused")


def _selftest_crash(g) -> None:
    g.note("selftest.crash: SIGSEGV on case 3 mod 5")
    if g.index % 5 == 3:
        os.kill(os.getpid(), signal.SIGSEGV)


def _selftest_poison(g) -> None:
    global _POISONED
    g.note("selftest.poison: case 2 mod 7 poisons the process, case 5 mod 7 then aborts")
    if g.index % 7 == 2:
        _POISONED = True
    if g.index % 7 == 5 and _POISONED:
        os.abort()


def _selftest_hang(g) -> None:
    g.note("selftest.hang: case 1 sleeps forever")
    if g.index == 1:
        while True:
            time.sleep(1)


def _selftest_invariant(g) -> None:
    g.note("selftest.invariant: case 0 breaks an invariant")
    if g.index == 0:
        raise Finding("invariant", "selftest invariant")


SELFTEST_OPS: dict[str, Callable] = {
    "selftest.ok": _selftest_ok, "selftest.raise": _selftest_raise, "selftest.crash": _selftest_crash,
    "selftest.poison": _selftest_poison, "selftest.hang": _selftest_hang, "selftest.invariant": _selftest_invariant,
}


def registry() -> dict[str, Callable]:
    """Every fuzzed op by name (imports torch and occrecon)."""
    from . import cases

    return cases.REGISTRY


def default_ops() -> list[str]:
    return sorted(registry())


def select_ops(patterns: Iterable[str] | None) -> list[str]:
    """Op names matching the shell-style ``patterns`` (all ops when None); self-test ops only when named."""
    if not patterns:
        return default_ops()
    names: list[str] = []
    for p in patterns:
        pool = SELFTEST_OPS if p.startswith("selftest.") else registry()
        hits = sorted(n for n in pool if fnmatch.fnmatchcase(n, p))
        if not hits:
            raise ValueError(f"--ops {p!r} matches no op; known: {', '.join(sorted(registry()))}")
        names += [h for h in hits if h not in names]
    return names


# ------------------------------------------------------------------------------------------------ the child
class _PlainCase:
    """What a self-test op sees of a case (the real ops get a tests.fuzz.gen.Gen)."""

    def __init__(self, rng: np.random.Generator, index: int, log: Callable[[str], None]):
        self.rng, self.index, self._log = rng, index, log

    def note(self, message: str) -> None:
        self._log(message)


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_case(seed: int, index: int, op: str, log: Callable[[str], None]) -> dict:
    """Run one case in this process: ``{"outcome": "result" | "exception" | "failure", "kind", "message"}``."""
    rng = case_rng(seed, index, op)
    if op in SELFTEST_OPS:
        fn, g = SELFTEST_OPS[op], _PlainCase(rng, index, log)
    else:
        from .gen import Gen

        fn, g = registry()[op], Gen(rng, index, log)
    rss = _max_rss_bytes()
    try:
        fn(g)
    except Finding as e:
        return {"outcome": "failure", "kind": e.kind, "message": e.message}
    except ALLOWED_EXCEPTIONS as e:
        if getattr(g, "raised", e) is not e:  # raised by the case's own code, not by a call of the op
            return {"outcome": "failure", "kind": "generator",
                    "message": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"}
        return {"outcome": "exception", "kind": type(e).__name__, "message": str(e).splitlines()[0][:300] if str(e)
                else ""}
    except BaseException as e:  # noqa: BLE001  (anything else is the failure we are looking for)
        return {"outcome": "failure", "kind": "bad-exception",
                "message": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"}
    grown = _max_rss_bytes() - rss
    if grown > MEMORY_LIMIT_BYTES:
        return {"outcome": "failure", "kind": "memory", "message": f"peak memory grew by {grown >> 20} MiB"}
    return {"outcome": "result", "kind": "result", "message": ""}


def child_main(seed: int, plan_path: str, results_path: str, threads: int) -> int:
    import faulthandler
    import warnings

    faulthandler.enable()  # a Python traceback on SIGSEGV/SIGABRT in the child's stderr (the signal still kills it)
    warnings.simplefilter("ignore")
    plan = json.loads(Path(plan_path).read_text())
    if not under_sanitizer():
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > ADDRESS_SPACE_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, hard))
    if any(op not in SELFTEST_OPS for _, op in plan):
        import torch

        torch.set_num_threads(threads)
        registry()
    fd = os.open(results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(record: dict) -> None:
        os.write(fd, (json.dumps(record) + "\n").encode())

    for index, op in plan:
        emit({"start": index, "op": op})
        result = run_case(seed, index, op, lambda m, i=index: emit({"log": i, "msg": m}))
        emit({"end": index, "op": op, **result})
    os.close(fd)
    return 0


# ----------------------------------------------------------------------------------------------- the parent
@dataclasses.dataclass
class CaseResult:
    index: int
    op: str
    outcome: str  # result | exception | failure
    kind: str  # "result", the exception's type name, or the failure kind
    message: str = ""
    log: list[str] = dataclasses.field(default_factory=list)
    detail: str = ""  # for a child that died: how it was pinned down, the stderr / sanitizer report tail


@dataclasses.dataclass
class _ChildRun:
    completed: list[CaseResult]
    died_at: tuple[int, str] | None  # the case in progress when the child died or hung
    how: str  # "" (clean), crash, exit, sanitizer, hang, startup
    report: str  # stderr tail and sanitizer logs
    log: list[str]  # log lines of the case in progress


def _sanitizer_logs(pid: int) -> str:
    """Report files a sanitizer wrote for ``pid`` (ASAN_OPTIONS / UBSAN_OPTIONS log_path)."""
    texts = []
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        for item in os.environ.get(var, "").split(":"):
            if item.startswith("log_path="):
                for path in sorted(glob.glob(glob.escape(item[len("log_path="):]) + f"*.{pid}")):
                    texts.append(f"--- {path}\n" + Path(path).read_text(errors="replace"))
    return "\n".join(texts)


#: a sanitizer's error report (its WARNING lines, e.g. a refused huge allocation, are not errors)
SANITIZER_REPORT = re.compile(r"ERROR: \w*Sanitizer|runtime error:|Sanitizer: CHECK failed|SUMMARY: \w*Sanitizer")


def _looks_sanitized(text: str) -> bool:
    return SANITIZER_REPORT.search(text) is not None


class Runner:
    """Runs batches of cases in child processes and pins down the ones that kill a child."""

    def __init__(self, seed: int, timeout: float, threads: int, verbose: bool = False, out: TextIO = sys.stdout,
                 env: dict[str, str] | None = None):
        self.seed, self.timeout, self.threads, self.verbose, self.out = seed, timeout, threads, verbose, out
        self.env = dict(env or {})
        self.children = 0
        self._lock = threading.Lock()

    def _spawn(self, plan: Sequence[tuple[int, str]]) -> _ChildRun:
        with tempfile.TemporaryDirectory(prefix="occrecon-fuzz-") as tmp:
            plan_path, results_path, err_path = (os.path.join(tmp, n) for n in ("plan.json", "results", "stderr"))
            Path(plan_path).write_text(json.dumps([list(p) for p in plan]))
            Path(results_path).touch()
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), PYTHONDONTWRITEBYTECODE="1", **self.env)
            cmd = [sys.executable, "-m", "tests.fuzz", "--child", "--seed", str(self.seed), "--plan", plan_path,
                   "--results", results_path, "--threads", str(self.threads)]
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=err,
                                        stderr=err)
            with self._lock:
                self.children += 1
            completed: list[CaseResult] = []
            current: tuple[int, str] | None = None
            current_log: list[str] = []
            started = time.monotonic()
            offset, buf, hung = 0, b"", False
            with open(results_path, "rb") as res:
                while True:
                    rc = proc.poll()
                    res.seek(offset)
                    chunk = res.read()
                    offset += len(chunk)
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        rec = json.loads(line)
                        if "start" in rec:
                            current, current_log, started = (rec["start"], rec["op"]), [], time.monotonic()
                        elif "log" in rec:
                            current_log.append(rec["msg"])
                        else:
                            completed.append(CaseResult(rec["end"], rec["op"], rec["outcome"], rec["kind"],
                                                        rec["message"], current_log))
                            current, current_log = None, []
                    if rc is not None:
                        break
                    if current is not None and time.monotonic() - started > self.timeout:
                        proc.kill()
                        proc.wait()
                        hung = True
                        break
                    time.sleep(0.02)
            stderr = Path(err_path).read_bytes().decode(errors="replace")
        report = (stderr[-6000:] + "\n" + _sanitizer_logs(proc.pid)).strip()
        if hung:
            how = "hang"
        elif rc == 0 and current is None and len(completed) == len(plan) and not _looks_sanitized(report):
            return _ChildRun(completed, None, "", "", [])
        elif _looks_sanitized(report):
            how = "sanitizer"
        elif rc < 0:
            how = "crash"
        else:
            how = "exit"
        if current is None:
            done = {c.index for c in completed}
            rest = [p for p in plan if p[0] not in done]
            if not completed or not rest:
                how = "startup" if not completed else how
            current = tuple(rest[0]) if rest else tuple(plan[-1])
        if how == "hang":
            how_rc = f"hang (no result after {self.timeout:.0f} s)"
        elif rc < 0:
            how_rc = f"{how} ({signal.Signals(-rc).name if -rc in signal.valid_signals() else f'signal {-rc}'})"
        else:
            how_rc = f"{how} (exit {rc})"
        return _ChildRun(completed, current, how_rc, report, current_log)

    def _dies(self, plan: Sequence[tuple[int, str]]) -> _ChildRun | None:
        run = self._spawn(plan)
        return run if run.died_at is not None else None

    def _pin_down(self, prefix: list[tuple[int, str]], first: _ChildRun) -> CaseResult:
        """The case ``prefix[-1]`` killed a child after ``prefix[:-1]``: re-run it alone, else bisect the prefix."""
        index, op = prefix[-1]
        if first.how.startswith("startup"):
            return CaseResult(index, op, "failure", "startup", first.how, first.log, first.report)
        solo = self._dies([prefix[-1]]) if len(prefix) > 1 else first
        if solo is not None:
            kind = solo.how.split(" ")[0]
            return CaseResult(index, op, "failure", kind, f"{solo.how}, alone", solo.log, solo.report)
        kind = first.how.split(" ")[0]
        if kind == "hang":  # bisecting hangs costs a timeout per probe: report as found
            return CaseResult(index, op, "failure", kind, f"{first.how}; passes alone", first.log, first.report)
        lo, hi, last = 0, len(prefix) - 1, first  # prefix[lo:] dies, prefix[hi:] passes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            run = self._dies(prefix[mid:])
            if run is not None:
                lo, last = mid, run
            else:
                hi = mid
        after = [f"{i}:{o}" for i, o in prefix[lo:-1]]
        shown = " ".join(after[:6]) + (f" ... ({len(after)} cases)" if len(after) > 6 else "")
        return CaseResult(index, op, "failure", kind, f"{first.how}, only after cases {shown}", last.log, last.report)

    def run_batch(self, plan: list[tuple[int, str]]) -> list[CaseResult]:
        results: list[CaseResult] = []
        pending = list(plan)
        while pending:
            run = self._spawn(pending)
            results += run.completed
            if run.died_at is None:
                break
            k = next(i for i, p in enumerate(pending) if tuple(p) == tuple(run.died_at))
            results.append(self._pin_down(pending[: k + 1], run))
            if results[-1].kind == "startup":
                break
            pending = pending[k + 1:]
        for r in results:
            if r.outcome == "failure":
                self.print_failure(r)
            elif self.verbose:
                with self._lock:
                    print(f"case {r.index}:{r.op}: {r.kind} {r.message}".rstrip(), file=self.out)
                    for line in r.log:
                        print(f"    {line}", file=self.out)
        return results

    def print_failure(self, r: CaseResult) -> None:
        with self._lock:
            print(f"FAIL case {r.index}:{r.op} [{r.kind}] {r.message}", file=self.out)
            print(f"    reproduce: python -m tests.fuzz --seed {self.seed} --case {r.index}:{r.op} -v", file=self.out)
            for line in r.log[-12:]:
                print(f"    | {line}", file=self.out)
            if r.detail:
                lines = r.detail.splitlines()
                head = next((i for i, line in enumerate(lines) if SANITIZER_REPORT.search(line)), None)
                for line in lines[head:head + 40] if head is not None else lines[-40:]:  # a report's top frames
                    print(f"    ! {line}", file=self.out)
            self.out.flush()


@dataclasses.dataclass
class Summary:
    seed: int
    cases: int
    seconds: float
    results: int
    exceptions: collections.Counter
    failures: list[CaseResult]
    per_op: dict[str, collections.Counter]
    children: int

    @property
    def crashes(self) -> int:
        return sum(f.kind in ("crash", "exit", "startup") for f in self.failures)

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.failures)

    def format(self) -> str:
        exc = ", ".join(f"{k} {v}" for k, v in self.exceptions.most_common()) or "none"
        other = collections.Counter(f.kind for f in self.failures
                                    if f.kind not in ("crash", "exit", "startup", "hang", "sanitizer"))
        lines = [f"fuzz: seed {self.seed}, {self.cases} cases over {len(self.per_op)} ops in {self.seconds:.1f} s "
                 f"({self.children} child processes)",
                 f"  results {self.results}, exceptions {sum(self.exceptions.values())} ({exc})",
                 f"  crashes {self.crashes}, hangs {self.count('hang')}, sanitizer reports {self.count('sanitizer')}, "
                 f"other failures {sum(other.values())}"
                 + (f" ({', '.join(f'{k} {v}' for k, v in other.most_common())})" if other else "")]
        width = max((len(op) for op in self.per_op), default=0)
        for op in sorted(self.per_op):
            c = self.per_op[op]
            lines.append(f"    {op:<{width}}  {c['result']:5d} results  {c['exception']:5d} exceptions  "
                         f"{c['failure']:3d} failures")
        return "\n".join(lines)


def fuzz(seed: int, cases: int, ops: Sequence[str] | None = None, first: int = 0, jobs: int = 1,
         batch: int = 200, timeout: float | None = None, only: Sequence[tuple[int, str]] | None = None,
         verbose: bool = False, out: TextIO = sys.stdout, env: dict[str, str] | None = None) -> Summary:
    """Run ``cases`` cases (indices ``first`` ...) over ``ops`` in child processes (environment: ours updated by
    ``env``), or exactly the cases ``only``."""
    names = list(ops) if ops else default_ops()
    plan = list(only) if only is not None else [(i, op_for(seed, i, names)) for i in range(first, first + cases)]
    if timeout is None:
        timeout = 300.0 if under_sanitizer() else 60.0
    jobs = max(1, min(jobs, len(plan)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    runner = Runner(seed, timeout, threads, verbose, out, env)
    size = max(1, min(batch, -(-len(plan) // jobs)))
    batches = [plan[i:i + size] for i in range(0, len(plan), size)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        done = list(pool.map(runner.run_batch, batches))
    results = [r for b in done for r in b]
    per_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        per_op[r.op][r.outcome] += 1
    return Summary(seed, len(plan), time.monotonic() - t0, sum(r.outcome == "result" for r in results),
                   collections.Counter(r.kind for r in results if r.outcome == "exception"),
                   [r for r in results if r.outcome == "failure"], dict(per_op), runner.children)


def _parse_case(text: str) -> tuple[int, str | None]:
    index, _, op = text.partition(":")
    return int(index), op or None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300, help="number of cases (default 300)")
    ap.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    ap.add_argument("--first", type=int, default=0, help="index of the first case (default 0)")
    ap.add_argument("--ops", nargs="+", metavar="OP", help="ops to fuzz, shell patterns (default: all; --list-ops)")
    ap.add_argument("--case", action="append", metavar="INDEX[:OP]", help="run only this case (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="child processes at a time (default 1)")
    ap.add_argument("--batch", type=int, default=200, help="cases per child process (default 200)")
    ap.add_argument("--timeout", type=float, help="seconds one case may take (default 60, 300 under ASan)")
    ap.add_argument("--list-ops", action="store_true", help="print the op names and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case and its calls")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.seed, args.plan, args.results, args.threads)
    if args.list_ops:
        print("\n".join(default_ops()))
        return 0
    try:
        ops = select_ops(args.ops)
        only = None
        if args.case:
            only = []
            for text in args.case:
                index, op = _parse_case(text)
                only.append((index, op if op else op_for(args.seed, index, ops)))
            for _, op in only:
                select_ops([op])
    except ValueError as e:
        print(f"python -m tests.fuzz: {e}", file=sys.stderr)
        return 2
    summary = fuzz(args.seed, args.cases, ops, args.first, args.jobs, args.batch, args.timeout, only,
                   args.verbose or bool(args.case))
    print(summary.format())
    return 1 if summary.failures else 0
