"""The progress line of long sofsctl jobs (sofsctl.progress), driven by a fake clock on a
fake terminal: bytes, rate over a sliding window, ETA, 100% at the end, phases, and nothing
at all on a stream that is not a terminal."""

from __future__ import annotations

import io

import pytest

from chunkstore.clock import FakeClock
from sofsctl.progress import (
    BYTES,
    PhaseLines,
    ProgressLine,
    format_amount,
    format_duration,
    format_rate,
    job_callback,
)

MIB = 1 << 20
GIB = 1 << 30


class FakeTty(io.StringIO):
    """What the line writes, as a terminal would receive it."""

    def isatty(self) -> bool:
        return True

    def lines(self) -> list[str]:
        """Each state drawn ("\\r" starts a redraw, "\\n" ends a line), trailing blanks off."""
        return [part.rstrip() for part in self.getvalue().replace("\n", "\r").split("\r")
                if part.strip()]

    def last(self) -> str:
        return self.lines()[-1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tty() -> FakeTty:
    return FakeTty()


def line_on(tty: FakeTty, clock: FakeClock, label: str = "repair", unit: str = BYTES,
            **kw) -> ProgressLine:
    return ProgressLine(label, unit, stream=tty, clock=clock, columns=120, **kw)


def test_formats():
    assert format_amount(1288490189, BYTES) == "1.2 GiB"
    assert format_amount(512, BYTES) == "512 B"
    assert format_amount(12034, "inodes") == "12,034 inodes"
    assert format_amount(7, "") == "7"
    assert format_rate(85.3 * MIB, BYTES) == "85.3 MiB/s"
    assert format_rate(3100, "inodes") == "3,100/s"
    assert format_rate(2.5, "chunks") == "2.5/s"
    assert format_rate(None, BYTES) == "--/s"
    assert format_duration(18.4) == "0:00:18"
    assert format_duration(3 * 3600 + 61) == "3:01:01"
    assert format_duration(None) == "--:--:--"


def test_a_bytes_line_shows_bar_percent_bytes_rate_and_eta(tty, clock):
    line = line_on(tty, clock)
    for _ in range(10):  # 100 MiB/s for 10 s
        clock.advance(1)
        line.update(line.done + 100 * MIB, 2 * GIB)
    # 1000 MiB of 2048: 48%, 9 of 20 marks; 1048 MiB left at 100 MiB/s
    assert tty.last() == ("repair   [#########-----------]  48%  1000.0 MiB / 2.0 GiB  "
                          "100.0 MiB/s  ETA 0:00:10")


def test_the_rate_is_measured_over_a_sliding_window(tty, clock):
    line = line_on(tty, clock)
    done = 0
    for _ in range(20):  # 100 MiB/s for 20 s, then 10 MiB/s for 10 s
        clock.advance(1)
        done += 100 * MIB
        line.update(done, 100 * GIB)
    for _ in range(10):
        clock.advance(1)
        done += 10 * MIB
        line.update(done, 100 * GIB)
    assert line.rate() == pytest.approx(10 * MIB)
    assert "10.0 MiB/s" in tty.last()
    assert line.eta() == pytest.approx((100 * GIB - done) / (10 * MIB))


def test_no_rate_nor_eta_before_the_first_half_second(tty, clock):
    line = line_on(tty, clock)
    clock.advance(0.2)
    line.update(MIB, 10 * MIB)
    assert tty.last().endswith("1.0 MiB / 10.0 MiB  --/s  ETA --:--:--")


def test_success_ends_at_exactly_100_percent_with_the_average_rate(tty, clock):
    line = line_on(tty, clock)
    clock.advance(10)
    line.update(900 * MIB, GIB)  # the total was an estimate; the job ended before it
    clock.advance(10)
    line.finish(ok=True)
    assert tty.last() == ("repair   [####################] 100%  1.0 GiB / 1.0 GiB  "
                          "51.2 MiB/s  in 0:00:20")
    assert tty.getvalue().endswith("\n")
    line.update(5, 10)  # after the end: nothing more is drawn
    line.finish()
    assert tty.getvalue().count("\n") == 1


def test_failure_and_ctrl_c_end_the_line_with_what_was_done(tty, clock):
    with pytest.raises(KeyboardInterrupt), line_on(tty, clock, "restore") as line:
        clock.advance(4)
        line.update(40 * MIB, 100 * MIB)
        raise KeyboardInterrupt
    assert tty.last() == ("restore  [########------------]  40%  40.0 MiB / 100.0 MiB  "
                          "10.0 MiB/s  interrupted after 0:00:04")
    assert tty.getvalue().endswith("\n")
    other = FakeTty()
    with pytest.raises(RuntimeError), line_on(other, clock) as line:
        line.update(1, 4)
        raise RuntimeError("disk gone")
    assert "25%" in other.last() and other.last().endswith("failed after 0:00:00")


def test_counts_without_a_total_then_with_one(tty, clock):
    line = line_on(tty, clock, "inodes", "inodes")
    clock.advance(2)
    line.update(6200, 0)
    assert tty.last() == "inodes   6,200 inodes  3,100/s"
    clock.advance(2)
    line.update(12034, 40000)
    assert tty.last() == ("inodes   [######--------------]  30%  12,034 / 40,000 inodes  "
                          "3,008/s  ETA 0:00:09")


def test_redraws_are_limited_and_a_shorter_line_blanks_the_longer_one(tty, clock):
    line = line_on(tty, clock, "delete", "chunks")
    clock.advance(1)
    line.update(1000, 2000)
    for n in range(1001, 1050):  # within one redraw interval: not drawn
        line.update(n, 2000)
    assert len(tty.lines()) == 1
    clock.advance(1)
    line.update(1, 0)  # went back (another measure): drawn at once, shorter
    drawn = tty.getvalue().split("\r")
    assert len(drawn[-1]) == len(drawn[-2])  # padded over what was there
    assert tty.last() == "delete   1 chunks  --/s"


def test_a_narrow_terminal_gets_a_narrower_bar(clock):
    tty = FakeTty()
    line = ProgressLine("checkpoint", BYTES, stream=tty, clock=clock, columns=70)
    clock.advance(1)
    line.update(MIB, 4 * MIB)
    text = tty.last()
    assert len(text) <= 69 and "[" in text and text.endswith("ETA 0:00:03")


def test_nothing_is_written_where_stderr_is_not_a_terminal(clock):
    out = io.StringIO()
    with ProgressLine("repair", stream=out, clock=clock) as line:
        clock.advance(1)
        line.update(5, 10)
    phases = PhaseLines(stream=out, clock=clock)
    phases("inodes", 3, 0)
    phases.finish()
    assert out.getvalue() == ""


def test_a_job_that_reported_nothing_draws_nothing(tty, clock):
    line_on(tty, clock).finish(ok=True)
    assert tty.getvalue() == ""


def test_phases_each_end_at_100_percent_on_their_own_line(tty, clock):
    phases = PhaseLines({"inodes": "inodes", "refcounts": "chunks"}, stream=tty, clock=clock,
                        columns=120)
    phases("superblock", 0, 1)
    phases("superblock", 1, 1)
    phases("inodes", 0, 0)
    clock.advance(3)
    phases("inodes", 9000, 0)  # the count is known only at the end of the phase
    phases("inodes", 9300, 9300)
    phases("refcounts", 0, 500)
    clock.advance(1)
    phases("refcounts", 200, 500)
    phases.finish(ok=False, note="interrupted")
    finals = tty.getvalue().split("\n")
    assert len(finals) == 4 and finals[-1] == ""
    assert finals[0].split("\r")[-1].startswith("superblock [####################] 100%  1 / 1")
    assert finals[1].split("\r")[-1].rstrip() == (
        "inodes   [####################] 100%  9,300 / 9,300 inodes  3,100/s  in 0:00:03")
    assert "40%  200 / 500 chunks" in finals[2] and "interrupted after 0:00:01" in finals[2]


def test_job_callback_draws_bytes_when_the_layer_gives_them(tty, clock):
    line = line_on(tty, clock, unit="chunks")
    progress = job_callback(line, "chunks")
    clock.advance(1)
    progress(3, 12, 300 * 1024, 1200 * 1024)
    assert "25%  300.0 KiB / 1.2 MiB" in tty.last()
    counts = line_on(FakeTty(), clock, unit="chunks")
    job_callback(counts, "chunks")(3, 12, phase="sweep")  # the mount's counts only
    assert counts.unit == "chunks" and (counts.done, counts.total) == (3, 12)
