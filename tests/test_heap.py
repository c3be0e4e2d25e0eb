"""The command line's process (and its workers) keep the C heap's freed memory for the next arrays (faceveil.heap):
without it glibc handed replace's few-MB temporaries of a face back to the system and faulted them in again page by
page (issue 22: ~15 % of the talking head's CPU in the kernel). A program using the API calls keep_freed itself."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import faceveil

PROBE = """
import resource
import numpy as np
from faceveil.cli import main
main(["detect", "/nonexistent/x.jpg"])  # any command: the process is the command's
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):  # two ~3 MB arrays alive at once, then freed: a large face's temporaries
    a = np.ones((500, 500, 3), np.float32)
    b = a * 2
    del a, b
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 40)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_command_keeps_freed_memory():
    # a fresh process: the heap's state in this one depends on what ran before. Main's code: ~1,430 page faults an
    # iteration (the 6 MB faulted in again); kept: ~30
    src = str(Path(faceveil.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) < 300


def test_keep_freed_is_idempotent():
    from faceveil.heap import keep_freed

    first = keep_freed()
    assert keep_freed() == first
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first
