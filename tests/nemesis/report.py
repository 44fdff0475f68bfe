"""What a nemesis run found: counts, faults, unavailability, violations; and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    seed: int
    seconds: float
    nodes: int
    replay: str
    operations: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    not_wired: dict[str, int] = field(default_factory=dict)
    unavailability: dict[str, dict] = field(default_factory=dict)
    proxy: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    crash_points: dict[str, dict] = field(default_factory=dict)
    node_peak_rss_kb: dict[int, int] = field(default_factory=dict)
    keys: int = 0
    workdir: str = ""
    fault_log: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.liveness and not self.unexpected_exits

    def summary(self) -> str:
        ops = self.operations
        lines = [
            f"nemesis: seed {self.seed}, {self.nodes} nodes, {self.seconds:g} s of faults",
            f"  operations: {ops.get('total', 0)} ({ops.get('chosen', 0)} chosen, "
            f"{ops.get('maybe', 0)} maybe chosen/timed out; cli {ops.get('cli', 0)}, "
            f"stream {ops.get('stream', 0)}, repair {ops.get('repair', 0)}) on {self.keys} keys",
            "  faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
        ]
        if "registers" in ops:
            lines.insert(2, f"  registers: {ops['registers']} operations ({ops['registers_done']}"
                            f" with a result, the rest outcome unknown), checked for "
                            f"linearizability")
        if self.not_wired:
            lines.append("  not wired (crash points not called by the runtime yet): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.not_wired.items())))
        for kind, c in sorted(self.crash_points.items()):
            lines.append(f"  {kind}: {c['crashed']} of {c['scheduled']} crashed at the point "
                         f"(placed by the {c['wiring']})")
        lines.append("  unavailability (longest gap between successful decisions, per kind):")
        for kind, u in self.unavailability.items():
            lines.append(f"    {kind:22} n={u['count']:<3} max {u['max_gap_s']:6.2f} s  "
                         f"mean {u['mean_gap_s']:6.2f} s")
        lines.append("  proxy: " + ", ".join(f"{k} {v}" for k, v in sorted(self.proxy.items()))
                     + f" ({self.proxy.get('messages', 0) / max(self.seconds, 1):.0f} messages/s)")
        if self.node_peak_rss_kb:
            lines.append("  node peak RSS: " + ", ".join(
                f"node{i} {kb / 1024:.0f} MiB" for i, kb in sorted(self.node_peak_rss_kb.items())))
        lines.append(f"  violations: {len(self.violations)}")
        lines += [f"    {v}" for v in self.violations[:20]]
        if self.liveness:
            lines.append(f"  not converged after healing: {len(self.liveness)}")
            lines += [f"    {v}" for v in self.liveness[:10]]
        if self.unexpected_exits:
            lines.append(f"  unexpected node exits: {self.unexpected_exits}")
        lines.append(f"  work directory: {self.workdir}")
        lines.append(f"  replay the fault schedule: {self.replay}")
        return "\n".join(lines)
