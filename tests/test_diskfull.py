"""A full disk never acknowledges a record that is only partly on disk (issue 27).

On a real small file system (a 512 KiB tmpfs in a mount namespace of its own, so the mount
dies with it), one node's disk fills under load: it must stop with the disk-full message,
its marker must never count a commit that is not whole on disk, and once space is freed
it must start again as the same node, as that message promises. The unit tests of the
same rules, with a faulty ``pwrite`` and ``posix_fallocate``, are in tests/test_journal.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.harness import ROOT, env

pytestmark = pytest.mark.e2e


def test_a_disk_full_stop_keeps_the_state_whole_and_a_restart_after_freeing_space_works(
        tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a tmpfs in a mount namespace")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.strip()}")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        "-m", "tests.diskfull_driver", str(tmp_path)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # node0 stopped because its disk filled, with the one-line message, exit 6.
    assert out["code"] == 6, out
    assert "disk full" in out["stderr"] and "Traceback" not in out["stderr"], out["stderr"]
    assert "free space on that file system and start the node again" in out["stderr"]
    # Nothing acknowledged runs past what is whole on disk: the marker (written after a
    # pass's replies) never counts a commit that the journal and database do not hold.
    before = out["before"]
    assert before["marker"] <= before["durable"], before
    # ... and the message was true: with space freed, the node starts as itself.
    assert out["restarted"], out["restart_error"]
    assert out["first_key_on_node0"] is not None and out["first_key_on_node0"]["chosen"]
