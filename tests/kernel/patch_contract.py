"""The contract every kernel function's Patch keeps, checked the same way by every raster test."""

from maskcore.kernel.patch import Patch, patch_to_full


def assert_valid_patch(patch: Patch, size_hw) -> None:
    """Bool mask, window inside the canvas, tight around the painted pixels."""
    assert patch.mask.dtype == bool
    assert 0 <= patch.top and 0 <= patch.left
    assert patch.bottom <= size_hw[0] and patch.right <= size_hw[1]
    if patch.mask.size:
        m = patch.mask
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()


def checked_full(patch: Patch, size_hw):
    """The patch on a full canvas, after checking its contract."""
    assert_valid_patch(patch, size_hw)
    return patch_to_full(patch, size_hw)
