"""The checks of a multi-process run (DIST-001..004): one owner per device, world sizes that
agree, nodes that add up to the total, rank clocks within skew and drift. A mixin of RunChecks."""

from __future__ import annotations

from harness.submission.findings import RunFiles, close_enough


class DistributedChecks:
    """Reports through self.add(rule, file, message) under self.rules."""

    def _check_distributed(self, files: RunFiles) -> None:
        """A multi-process run: every domain has one owner, nodes add up to the total."""
        result = files.result
        rel, tol, d = f"{files.rel}/result.json", self.rules.energy_tolerance, result["distributed"]
        if d is None:
            return
        metered = [x for s in result["meters"] for x in s["domains"]]
        owned = [x for r in d["ranks"] for x in r["domains"]]
        if sorted(owned) != sorted(metered) or len(set(owned)) != len(owned):
            self.add(
                "DIST-001",
                rel,
                "the ranks' domains do not match the meters' one to one; "
                "a device is unowned or counted twice.",
            )
        sizes = {d["world_size"], len(d["ranks"]), result["system"]["world_size"]}
        sizes |= {len(d["clock_offsets_ns"]), len(d["clock_scales"])}
        if len(sizes) != 1:
            self.add("DIST-002", rel, f"world size disagrees between fields: {sorted(sizes)}.")
        self._check_rank_clocks(rel, result["timing"]["duration_s"], d["clock_scales"])
        m = result["metrics"]
        node_sum = sum(n["energy_j"] or 0.0 for n in d["nodes"])
        if m is not None and not close_enough(m["energy_total_j"], node_sum, tol):
            self.add(
                "DIST-003",
                rel,
                f"the nodes' energies add up to {node_sum:.6g} J, not the total "
                f"{m['energy_total_j']:.6g} J.",
            )

    def _check_rank_clocks(self, rel: str, duration_s: float | None, scales: list[float]) -> None:
        """Each rank's run_start..run_stop, on its own clock, is rank 0's window divided by its
        clock scale; barrier jitter and crystal drift explain a small difference, a large one
        means the ranks' edges were not the same steps and the per-rank energies cover
        different work."""
        if duration_s is None:
            return
        allowed = self.rules.max_edge_skew_s + self.rules.max_clock_drift_ppm * 1e-6 * duration_s
        for rank, scale in enumerate(scales):
            if scale <= 0:
                self.add("DIST-004", rel, f"rank {rank}'s clock scale {scale:g} is not positive.")
                continue
            skew_s = duration_s / scale - duration_s
            if abs(skew_s) > allowed:
                self.add(
                    "DIST-004",
                    rel,
                    f"rank {rank} timed {duration_s / scale:.3f} s between run_start and run_stop, "
                    f"rank 0 {duration_s:.3f} s (allowed difference {allowed:.3f} s); every rank "
                    "must open and close the timed window at the same barriers.",
                )
