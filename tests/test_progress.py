"""The live status line: shown on a terminal, silent in pipes and logs."""

from __future__ import annotations

import io

from harness.progress import Progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_steps_loss_watts_and_joules():
    out = FakeTty()
    p = Progress("auto", out)
    p.update(20, 100, 1.2345, 250.0, 1234.5)
    p.update(30, 100, 1.1, 251.0, 1300.0, eval_loss=1.05)
    p.close()
    text = out.getvalue()
    assert "\rstep 20/100  loss 1.2345    250.0 W      1234.5 J" in text
    assert "eval 1.0500" in text and text.endswith("\n")


def test_pipes_stay_quiet_unless_forced():
    quiet = io.StringIO()
    Progress("auto", quiet).update(1, 2, 0.5, 1.0, 1.0)
    assert quiet.getvalue() == ""
    forced = io.StringIO()
    Progress("on", forced).update(1, 2, 0.5, 1.0, 1.0)
    assert "step 1/2" in forced.getvalue()
