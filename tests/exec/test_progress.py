import io

from maskcore.exec.progress import Progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_log_lines_only_every_interval_and_at_the_end():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(100, 10, stream=out, interval=30, live=False, clock=clock)
    for i in range(10):
        clock.now += 10
        p.update(10, 1 if i == 3 else 0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30 s, 60 s, 90 s, and the last partition at 100 s
    assert lines[-1].startswith("maskcore: partitions 10/10, items 100/100 (1 failed), 1.0 items/s")
    assert "\r" not in out.getvalue()


def test_live_display_rewrites_one_line():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(4, 2, stream=out, live=True, clock=clock)
    clock.now = 2
    p.update(2, 0)
    clock.now = 4
    p.update(2, 0)
    p.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "ETA 0:00:02" in text.split("\r")[1]
