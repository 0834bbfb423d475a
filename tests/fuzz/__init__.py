"""A seeded random fuzz suite over every public kernel op and every ``torch.ops.occrecon`` op (docs/testing.md).

Each case is one random call (and its backward) drawn from a seed and a case number: random shapes (0-sized,
mismatched, huge), dtypes, memory layouts (non-contiguous, expanded, zero-stride), values (NaN, ±inf, huge,
denormal, out-of-range indices and triangle ids) and in-place writes to ``tri`` between calls. A case must end in
a result or a Python exception (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError); valid input
must give a result that passes cheap invariants. Cases run in child processes, so a crash, a hang or a sanitizer
report is caught and reported with the seed, case and op that reproduce it::

    python -m tests.fuzz --cases 5000 --seed 1 --jobs 2
    python -m tests.fuzz --seed 1 --case 1234 --ops direct.interpolate_backward -v    # one case, with its calls
"""
