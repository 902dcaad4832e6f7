"""Progress lines: items done of the total, the time so far, and an ETA from the mean pace."""

from __future__ import annotations

import io

from reflexarc.runtime.progress import Progress, eta_text


def test_eta_is_the_mean_time_per_item_times_the_items_left() -> None:
    assert eta_text(2, 10, 4.0) == "ETA 16 s"
    assert eta_text(1, 3, 90.0) == "ETA 3 min"
    assert eta_text(0, 10, 1.0) == "" and eta_text(10, 10, 5.0) == ""


def test_updates_are_throttled_but_the_last_is_always_written() -> None:
    out = io.StringIO()
    bar = Progress("eval push", 4, "episodes", every_s=3600.0, stream=out)
    for k in range(1, 5):
        bar.update(k, f"success {k}/{k}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first, then nothing for an hour but the end
    assert lines[0].startswith("eval push: 1/4 episodes, ") and "ETA" in lines[0]
    assert lines[1].startswith("eval push: 4/4 episodes, ") and lines[1].endswith("(success 4/4)")
    assert "ETA" not in lines[1]
