"""staging.temporary_relpath: names unique across threads, forked children and processes, all in
the one temporaries folder."""

import multiprocessing
import re
import threading

from maskcore.io.staging import TMP_DIR, temporary_relpath

NAME = re.compile(rf"{re.escape(TMP_DIR)}/[0-9a-f]{{25,}}\.part")


def _names(n):
    return [temporary_relpath() for _ in range(n)]


def _names_to(queue, n):
    queue.put(_names(n))


def test_names_are_unique_across_threads_and_in_the_temporaries_folder():
    got, threads = [], []
    for _ in range(4):
        t = threading.Thread(target=lambda: got.extend(_names(2000)))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8000 and len(set(got)) == 8000
    assert all(NAME.fullmatch(name) for name in got), got[:3]


def test_forked_and_spawned_children_draw_names_of_their_own():
    parent = _names(50)  # the parent's prefix is drawn before the fork
    names = set(parent)
    for method in ("fork", "spawn"):
        ctx = multiprocessing.get_context(method)
        queue = ctx.Queue()
        children = [ctx.Process(target=_names_to, args=(queue, 50)) for _ in range(2)]
        for c in children:
            c.start()
        batches = [queue.get(timeout=60) for _ in children]
        for c in children:
            c.join(60)
        for batch in batches:
            assert len(set(batch)) == 50 and not names & set(batch), method
            names |= set(batch)
    assert len(names) == 250
