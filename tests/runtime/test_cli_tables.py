"""The CLI's tables show every value as it is (rich's markup is not applied to values)."""

from __future__ import annotations

import pytest

from reflexarc.runtime.cli import print_summary


def test_bracketed_values_are_printed_not_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary({"topics": ["camera/front", "joint_state"], "note": "[bold]x[/bold]",
                   "rows": [{"name": "[red]", "n": 1}]}, "t")
    out = capsys.readouterr().out
    assert "[camera/front, joint_state]" in out
    assert "[bold]x[/bold]" in out and "[red]" in out
