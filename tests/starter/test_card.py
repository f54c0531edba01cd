from starter.card import busy_seconds


def test_busy_time_leaves_out_pauses_between_sessions() -> None:
    # Two sessions of one stage: 0-60 s, then a 30-minute pause, then 1860-1920 s.
    times = [0.0, 30.0, 60.0, 1860.0, 1890.0, 1920.0]
    assert busy_seconds(times) == 120.0
    assert busy_seconds([5.0]) == 0.0
