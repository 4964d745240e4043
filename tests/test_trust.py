"""Issue 16: scores pool only like runs and keep MLPerf's run set; sweeps, `--print-config`,
globs and unknown keys obey the README's exit codes; reports draw every run."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from harness.cli import main
from harness.submission.score import pooling_notes, scores


def _run(seed, time_s, energy_j, provenance="measured", region="USA", max_steps=600, reached=True):
    return {
        "_path": f"/runs/r{seed}-{provenance}-{region}-{max_steps}",
        "seed": seed,
        "benchmark": "lm-dense-tiny",
        "system": {"accelerator": {"model": "H100"}},
        "workload": {"framework": "torch"},
        "meters": [{"provenance": provenance}],
        "config": {"seed": seed, "run_dir": f"r{seed}", "benchmark": {"max_steps": max_steps}},
        "timing": {"time_to_target_s": time_s},
        "metrics": {
            "reached_target": reached,
            "energy_to_target_j": energy_j,
            "energy_per_step": {"mean_j": energy_j / 100},
            "tokens_per_joule": 1000.0 / energy_j,
        },
        "carbon": {
            "pue": 1.1,
            "location_based": {
                "kg_co2e": energy_j * 1e-6,
                "region": region,
                "year": 2023,
                "basis": "lifecycle",
            },
        },
    }


def test_energy_is_averaged_over_the_runs_the_time_ranking_keeps():
    # fastest (1 s) and slowest (5 s) dropped: seeds 2, 3, 4, whatever their energy rank
    runs = [_run(1, 1.0, 50.0), _run(2, 2.0, 10.0), _run(3, 3.0, 30.0), _run(4, 4.0, 40.0)]
    runs.append(_run(5, 5.0, 20.0))
    (s,) = scores(runs)
    assert s.kept_seeds == [2, 3, 4]
    assert s.energy_to_target_j == pytest.approx((10 + 30 + 40) / 3)  # the energy rank: 30
    assert s.time_to_target_s == pytest.approx(3.0)
    assert s.spread["energy_to_target_j"] == [10.0, 40.0]
    assert s.kg_co2e == pytest.approx(80 / 3 * 1e-6)
    assert s.spread["kg_co2e"] == pytest.approx([10e-6, 40e-6])
    assert s.energy_to_target_spread_j == [10.0, 20.0, 30.0, 40.0, 50.0]
    # a run that missed the target ranks slowest, and is the one dropped
    runs[0] = _run(1, 0.5, 50.0, reached=False)
    (s,) = scores(runs)
    assert s.kept_seeds == [3, 4, 5] and s.converged == 4


@pytest.mark.parametrize(
    ("odd", "says"),
    [
        ({"provenance": "simulated"}, "meter provenance"),
        ({"region": "DEU"}, "carbon basis"),
        ({"max_steps": 900}, "config"),
    ],
)
def test_unlike_runs_are_split_into_rows_and_the_split_is_named(odd, says):
    like = [_run(i, float(i), 100.0 + i) for i in range(1, 4)]
    unlike = [_run(i, float(i), 300.0 + i, **odd) for i in range(4, 6)]
    rows = scores(like + unlike)
    assert len(rows) == 2
    by_runs = {s.runs: s for s in rows}
    assert by_runs[3].energy_to_target_j == pytest.approx(102.0)  # the like runs alone
    assert by_runs[2].energy_to_target_j == pytest.approx(304.5)
    assert by_runs[2].variant and by_runs[2].variant != by_runs[3].variant
    (note,) = pooling_notes(like + unlike)
    assert note == f"lm-dense-tiny/torch on H100: split into 2 rows: the runs differ in {says}"
    if "max_steps" in odd:
        assert by_runs[2].variant == "benchmark.max_steps=900"
    assert pooling_notes(like) == [] and scores(like)[0].variant == ""


def test_seed_and_run_dir_do_not_split_a_score():
    (s,) = scores([_run(i, float(i), 100.0) for i in range(1, 6)])
    assert s.runs == 5 and s.variant == ""


def test_unknown_key_added_with_plus_is_one_line_and_exit_2(capsys):
    assert main(["run", "+no_such_key=1", "meter=simulated"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no_such_key is not a joulebench setting" in err
    assert main(["run", "+benchmark.model.widht=3", "meter=simulated"]) == 2
    assert "benchmark.model.widht" in capsys.readouterr().err


def test_glob_sweeps_expand_to_the_group_options_or_explain(capsys):
    from harness.compose import expand_sweeps

    jobs = expand_sweeps(["benchmark=glob(lm-*-tiny,exclude=lm-moe-*)", "seed=1,2"])
    assert jobs == [
        ["benchmark=lm-dense-facts-tiny", "seed=1"],
        ["benchmark=lm-dense-facts-tiny", "seed=2"],
        ["benchmark=lm-dense-tiny", "seed=1"],
        ["benchmark=lm-dense-tiny", "seed=2"],
    ]
    assert main(["run", "-m", "benchmark=glob(nothing*)", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches no option of benchmark" in err
    assert main(["run", "-m", "seed=glob(1*)"]) == 2
    assert "seed is not one" in capsys.readouterr().err


def test_print_config_with_hydra_overrides_prints_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--print-config", "-m", "hydra/launcher=basic", "seed=1,2"]) == 0
    out = capsys.readouterr().out
    assert out.count("benchmark:\n") == 2 and "seed: 2" in out
    assert not (tmp_path / "results").exists()


def test_hydra_run_dir_is_refused_with_advice_that_works(capsys):
    assert main(["run", "hydra.run.dir=/tmp/x", "meter=simulated"]) == 2
    err = capsys.readouterr().err
    assert "run_dir=<folder>" in err and "add -m" not in err
    assert main(["run", "-m", "hydra.run.dir=/tmp/x", "seed=1,2"]) == 2


class _StreamClosingHandler(logging.StreamHandler):
    """Like absl's handler (which JAX installs): closing it closes its stream."""

    def close(self):
        self.stream.close()
        super().close()


@pytest.mark.slow
def test_a_hydra_launcher_sweep_exits_1_when_a_run_misses_its_target(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    earlier = _StreamClosingHandler(io.StringIO())  # a handler this process had before the sweep
    logging.getLogger().addHandler(earlier)
    common = ["meter=simulated", "benchmark.max_steps=20", "progress=off", "framework.threads=1"]
    miss = ["benchmark.eval_every_steps=10", "benchmark.target.threshold=0.01"]
    code = main(["run", "-m", "hydra/launcher=basic", "seed=1,2", *common, *miss])
    assert code == 1
    assert "joulebench: 0 of 2 sweep jobs succeeded." in capsys.readouterr().out
    hit = ["benchmark.target.threshold=9"]  # met at the first eval
    assert main(["run", "-m", "hydra/launcher=basic", "seed=3", *common, *hit]) == 0
    exits = sorted(Path(tmp_path).glob("results/runs/sweeps/*/*/joulebench_exit_code"))
    assert sorted(p.read_text().strip() for p in exits) == ["0", "1", "1"]
    assert not earlier.stream.closed  # Hydra never reconfigured logging under it
    logging.getLogger().removeHandler(earlier)
    # no handler of the sweep's (on the captured stdout) outlives it
    assert not any(
        getattr(h, "stream", None) is not None and h.stream.closed
        for h in logging.getLogger().handlers
    )


def test_sweep_exit_code_counts_jobs_that_never_reported(tmp_path):
    from harness.cluster import EXIT_FILE, sweep_exit_code

    for i, code in enumerate([0, 0]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / EXIT_FILE).write_text(f"{code}\n")
    assert sweep_exit_code(tmp_path, 2) == (0, "2 of 2 sweep jobs succeeded")
    code, line = sweep_exit_code(tmp_path, 3)  # one job crashed before writing its code
    assert code == 1 and line.startswith("2 of 3 sweep jobs succeeded; 1 never reported")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / EXIT_FILE).write_text("130\n")
    assert sweep_exit_code(tmp_path, 3)[0] == 130


def test_the_power_chart_draws_every_run(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from harness.report import plot_power
    from tests.helpers import short_run
    from tests.submission_helpers import synthetic_run

    template = tmp_path / "template"
    short_run(str(template))
    runs = [synthetic_run(template, tmp_path / f"s{i}", seed=i, hours=1 / 360) for i in range(8)]
    results = [{**json.loads((r / "result.json").read_text()), "_path": str(r)} for r in runs]
    (runs[3] / "power.csv").write_text("not a trace\n")
    drawn, left_out = plot_power(results, tmp_path / "p.png")
    assert drawn == 7 and len(left_out) == 1 and "seed 3" in left_out[0]
    assert (tmp_path / "p.png").stat().st_size > 1000
