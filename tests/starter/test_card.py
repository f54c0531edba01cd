import json
from pathlib import Path

from starter.card import (
    busy_seconds,
    latest_per_step,
    read_log,
    read_pauses,
    stage_minutes,
    time_table,
)


def test_busy_time_leaves_out_pauses_between_sessions() -> None:
    # Two sessions of one stage: 0-60 s, then a 30-minute pause, then 1860-1920 s.
    times = [0.0, 30.0, 60.0, 1860.0, 1890.0, 1920.0]
    assert busy_seconds(times) == 120.0
    assert busy_seconds([5.0]) == 0.0


def write_log(run: Path, records: list[dict]) -> None:
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_resumed_unet_run_keeps_the_steps_before_it(tmp_path: Path) -> None:
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    unet = [{"stage": "unet", "step": s, "loss": 1.0, "time": s} for s in (25, 50, 75, 100)]
    write_log(first, [{"stage": "vae", "step": 50, "loss": 0.1, "time": 0}, *unet])
    write_log(
        resumed, [{"stage": "unet", "step": s, "loss": 0.5, "time": s} for s in (75, 100, 125)]
    )
    log = read_log([first, resumed])
    steps = [(r["step"], r["run"]) for r in log if r["stage"] == "unet"]
    assert steps == [(25, 0), (50, 0), (75, 1), (100, 1), (125, 1)]
    assert [r["stage"] for r in log][0] == "vae"


def test_a_unet_run_from_scratch_replaces_the_earlier_one(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    write_log(old, [{"stage": "unet", "step": s, "loss": 1.0, "time": s} for s in (25, 50, 75)])
    write_log(new, [{"stage": "unet", "step": s, "loss": 0.5, "time": s} for s in (25, 50)])
    assert {r["run"] for r in read_log([old, new]) if r["stage"] == "unet"} == {1}


def test_steps_repeated_after_an_interruption_count_once() -> None:
    # Interrupted at step 75 with a checkpoint at 50: the rerun logs 75 again.
    records = [
        {"run": 0, "step": s, "loss": loss}
        for s, loss in ((25, 1.0), (50, 0.9), (75, 0.8), (75, 0.7), (100, 0.6))
    ]
    kept = latest_per_step(records)
    assert [(r["step"], r["loss"]) for r in kept] == [(25, 1.0), (50, 0.9), (75, 0.7), (100, 0.6)]


def test_recorded_pauses_are_not_busy_time() -> None:
    # Logged every 30 s; paused 200 s between 60 and 290.
    times = [0.0, 30.0, 60.0, 290.0, 320.0]
    assert busy_seconds(times, pauses=[(70.0, 270.0)]) == 120.0
    # A pause that makes a gap look like a break between sessions still counts as one.
    assert busy_seconds([0.0, 900.0], pauses=[(10.0, 310.0)]) == 600.0


def test_the_time_table_totals_the_stages_but_not_the_decoder_beside_the_unet(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    records = [{"stage": "vae", "step": s, "loss": 0.1, "time": 60.0 * s} for s in range(11)]
    records += [
        {"stage": "unet", "step": s, "loss": 0.1, "time": 1000.0 + 60 * s} for s in range(6)
    ]
    records += [
        {"stage": "decoder", "step": s, "loss": 0.1, "time": 1000.0 + 60 * s} for s in range(4)
    ]
    write_log(run, records)
    (run / "pauses.json").write_text(json.dumps([[1000.0 + 60, 1000.0 + 120]]))
    minutes = stage_minutes(read_log([run]), read_pauses([run]))
    assert minutes == {"vae": 10.0, "unet": 4.0, "decoder": 2.0}
    assert time_table(minutes)[-1] == "| **total** | **14.0** (0 h 14 min) |"
