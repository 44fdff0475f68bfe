"""Whole ``zpaxos propose`` processes and bare imports, two checkouts interleaved (A/B).

Both checkouts speak the same wire, so one temporary 3-node cluster (run by this
interpreter's checkout) serves both proposers; each run alternates A and B, so a loaded
machine slows both alike. Bytecode is cached per checkout (one untimed run each first)::

    .venv/bin/python bench/process_ab.py --a /tmp/base/.venv/bin/python \\
        --b .venv/bin/python --runs 20

Prints, per checkout, the median and minimum wall time and CPU time (user + system, the
figure a loaded machine disturbs least) of ``zpaxos propose`` (start-up included) and of
``python -c "import zpaxos.runtime.client"`` (all that propose imports to talk to the
cluster: the messages, the registry and the codec among them), and the
CPU time of importing ``zpaxos.runtime.codec`` alone (messages, registry, codec and their
serialisation library) once the modules both checkouts share are loaded.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zpaxos.lab.launcher import child_env, free_ports, write_config

IMPORT = "import zpaxos.runtime.client"
# The message types, the registry and the codec alone, timed inside the process (CPU
# seconds) after what both checkouts import alike (zmq, typing, re, dataclasses...).
CODEC = ("import time, re, typing, dataclasses, struct, zmq, zpaxos.naming; "
         "t = time.process_time(); import zpaxos.runtime.codec; "
         "print((time.process_time() - t) * 1000)")


def checkout_of(python: str) -> Path:
    """The checkout a venv's python belongs to (``<checkout>/.venv/bin/python``)."""
    return Path(python).absolute().parent.parent.parent


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=60)
    ms = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{cmd} failed: {r.stderr.decode().strip()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return ms, cpu


def codec_ms(py: str, cwd: Path, env: dict[str, str]) -> float:
    r = subprocess.run([py, "-c", CODEC], cwd=cwd, env=env, capture_output=True, timeout=60,
                       text=True, check=True)
    return float(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="python of checkout A (its .venv)")
    ap.add_argument("--b", required=True, help="python of checkout B (its .venv)")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zpaxos-ab-") as tmp:
        work = Path(tmp)
        cfg = write_config(work / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
                           log_level="WARNING", value_files="")
        nodes = []
        for i in range(3):
            p = subprocess.Popen([sys.executable, "-m", "zpaxos", "node", str(i), "--config",
                                  str(cfg), "-q"], cwd=work, env=child_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert p.stdout is not None
            if "listening" not in p.stdout.readline():
                raise SystemExit(f"node{i} did not start")
            nodes.append(p)
        try:
            sides = {}
            for name, py in (("A", a.a), ("B", a.b)):
                # Bytecode cached (as an installed package has it), whatever
                # PYTHONDONTWRITEBYTECODE says: a start-up figure is not a recompile.
                env = {k: v for k, v in os.environ.items()
                       if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
                env["PYTHONPYCACHEPREFIX"] = str(work / f"pycache-{name}")
                sides[name] = (py, checkout_of(py), env)
            times: dict[str, dict[str, list[float]]] = {
                n: {"propose wall": [], "propose cpu": [], "import wall": [], "import cpu": [],
                    "codec import": []}
                for n in sides}
            for i in range(-1, a.runs):  # -1: untimed, caches the bytecode
                for name, (py, where, env) in sides.items():
                    propose = [py, "-m", "zpaxos", "propose", f"v{i}", "--key",
                               f"ab-{name}-{i + 1}", "-q", "--config", str(cfg)]
                    p_ms, p_cpu = timed(propose, where, env)
                    i_ms, i_cpu = timed([py, "-c", IMPORT], where, env)
                    c_ms = codec_ms(py, where, env)
                    if i >= 0:
                        times[name]["codec import"].append(c_ms)
                        for what, v in (("propose wall", p_ms), ("propose cpu", p_cpu),
                                        ("import wall", i_ms), ("import cpu", i_cpu)):
                            times[name][what].append(v)
            for name, (_, where, _) in sides.items():
                print(f"{name} ({where}):")
                for what, v in times[name].items():
                    print(f"  {what:13s} median {statistics.median(v):6.1f} ms   "
                          f"min {min(v):6.1f} ms")
        finally:
            for p in nodes:
                p.terminate()
            for p in nodes:
                p.wait(10)


if __name__ == "__main__":
    main()
