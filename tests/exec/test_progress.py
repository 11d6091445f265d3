import io
import re

from maskcore.exec.progress import ItemReporter, Progress, StampedStream, timestamp


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
    assert lines[-1].startswith("maskcore: items 100/100 (1 failed), partitions 10/10, 1.0 items/s")
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


def test_items_count_as_they_finish_and_a_partitions_result_has_the_last_word():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(10, 2, stream=out, interval=0, live=False, clock=clock)
    report = ItemReporter(0, notify=p.item_done)
    for status in ("ok", "failed", "ok"):
        clock.now += 1
        report(status)
    assert (p.items, p.failed, p.parts) == (3, 1, 0)
    p.item_done(1, 2, 0)          # the other partition, from a worker's events
    p.item_done(1, 1, 0)          # an older event arriving late changes nothing
    assert p.items == 5
    p.update(5, 1, 0)             # partition 0 finished: its result's counts replace its events
    p.item_done(0, 4, 0)          # a late event of a finished partition is ignored
    assert (p.items, p.failed, p.parts) == (7, 1, 1)
    lines = out.getvalue().splitlines()
    assert [re.search(r"items (\d+)/10", line)[1] for line in lines] == ["1", "2", "3", "5", "7"]
    assert "partitions 0/2" in lines[2] and "partitions 1/2" in lines[-1]


def test_a_retried_partition_counts_again_from_its_result():
    p = Progress(4, 1, stream=io.StringIO(), live=False, interval=1e9)
    p.item_done(0, 3, 1)
    p.item_done(0, 1, 0)          # the retry's first item: the count does not go back
    assert p.items == 3
    p.update(4, 0, 0)
    assert (p.items, p.failed) == (4, 0)


def test_live_redraws_are_throttled_but_the_last_count_is_drawn():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(100, 1, stream=out, live=True, clock=clock)
    for n in range(1, 100):
        clock.now += 0.01         # 100 items a second: about one redraw per 10 items
        p.item_done(0, n)
    p.update(100, 0, 0)
    draws = out.getvalue().split("\r")[1:]
    assert 9 <= len(draws) <= 12
    assert "items 100/100" in draws[-1] and "partitions 1/1" in draws[-1]


def test_stamped_lines_start_with_an_iso_utc_time():
    out = io.StringIO()
    stream = StampedStream(out, clock=lambda: 1_700_000_000.0)
    stream.write("maskcore: a\nmaskcore: b")
    assert out.getvalue() == "2023-11-14T22:13:20Z maskcore: a\n"   # b waits for its newline
    stream.write(" continued\n")
    stream.write("")
    stream.write("prompt: ")
    stream.flush()                # a partial line shown on flush, its rest not stamped again
    stream.write("yes\n")
    assert out.getvalue() == ("2023-11-14T22:13:20Z maskcore: a\n"
                              "2023-11-14T22:13:20Z maskcore: b continued\n"
                              "2023-11-14T22:13:20Z prompt: yes\n")


def test_stamped_lines_of_two_threads_never_mix():
    import threading

    out = io.StringIO()
    stream = StampedStream(out, clock=lambda: 0.0)

    def writer(tag: str) -> None:
        for i in range(300):
            stream.write(f"{tag} {i}")   # as print does: the text, then the newline
            stream.write("\n")

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 600
    assert all(re.fullmatch(r"1970-01-01T00:00:00Z [ab] \d+", line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", timestamp())
