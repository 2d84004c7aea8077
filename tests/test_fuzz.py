"""The header fuzz test (issue 14): mutated JPEG, PNG, TIFF, WebP and JPEG 2000 headers from a fixed seed, for a
fixed number of cases, in a child process whose address space is capped. Every case must be decoded within the pixel limit
or refused with a DecodeError: no other exception, no crash, no hang. See tests/helpers/fuzz.py."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fuzz

SEED = 14
CASES = 1000  # the first ones of the fixed sequence: a count, not a time, so a busy machine runs the same test
SECONDS = 240  # a hang guard for the whole run (about 5 s on 2 idle cores, 18 s at load 12)
ADDRESS_SPACE = 3 << 30  # a decode the pixel limit allows fits; an unbounded one fails instead of taking the machine


def test_the_cases_are_the_same_for_the_same_seed():
    first = [case for _, case in zip(range(60), fuzz.cases(SEED))]
    again = [case for _, case in zip(range(60), fuzz.cases(SEED))]
    assert first == again and {fmt for _, fmt, _, _ in first} == set(fuzz.seeds())


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, resource.RLIM_INFINITY))


@pytest.mark.slow
def test_fuzzed_headers_are_decoded_within_the_limit_or_refused(tmp_path):
    script = f"import sys; from helpers.fuzz import run; sys.exit(run({SEED}, {CASES}, {SECONDS}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=_capped,
                          cwd=Path(__file__).parent, timeout=SECONDS + 60)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    refused = {reason: count for reason, count in summary["outcomes"].items() if reason.startswith("refused")}
    assert summary["cases"] == CASES and summary["outcomes"].get("decoded", 0) > 0, summary
    assert any("over the limit" in reason for reason in refused), summary  # size lies reach the pixel limit
    print(json.dumps(summary))
