"""VOC colours: the table (``voc_colormap``) agrees with the per-index rule (``voc_color``) for any
length, and callers get their own copy of it."""

from __future__ import annotations

import numpy as np
import pytest

from maskcore.kernel.palette import voc_color, voc_colormap


@pytest.mark.parametrize("n", [0, 1, 2, 37, 255, 256, 257, 600])
def test_colormap_rows_are_the_voc_colours(n):
    table = voc_colormap(n)
    assert table.shape == (n, 3) and table.dtype == np.uint8
    assert [tuple(int(v) for v in row) for row in table] == [voc_color(k) for k in range(n)]


def test_each_call_gets_its_own_table():
    first = voc_colormap(5)
    first[:] = 7
    assert tuple(voc_colormap(5)[1]) == voc_color(1) == (128, 0, 0)
