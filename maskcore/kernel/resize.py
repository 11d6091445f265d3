"""Pure-numpy, bit-exact re-implementation of ``cv2.resize(..., interpolation=cv2.INTER_AREA)``
for ``uint8`` images, plus the output-size rule of Supervisely's "Export as masks" app.

Conventions (read before the code)
----------------------------------
* Input: ``uint8`` array of shape ``(H, W)`` or ``(H, W, C)`` with ``C`` in 1..4.
  Output has dtype ``uint8`` and shape ``(h, w)`` / ``(h, w, C)``.  Like cv2, a
  ``(H, W, 1)`` input gives a 2-D ``(h, w)`` result.  Sizes are always given as
  ``(height, width)`` here (cv2's ``dsize`` is ``(width, height)``).
* Scale factors are computed exactly as OpenCV does in double precision:
  ``inv_scale = dst / src`` and ``scale = 1.0 / inv_scale`` (note: *not* ``src / dst``).
* Pixel model ("area rule"): source pixel ``i`` covers ``[i, i+1)``; destination pixel
  ``d`` covers ``[d*scale, (d+1)*scale)`` in source coordinates.  There is no half-pixel
  shift in any INTER_AREA branch.
* Which formula is used (same branching as OpenCV ``cv::hal::resize``):
  1. same size                      -> plain copy;
  2. ``scale_x >= 1 and scale_y >= 1`` and both scales are integers (within DBL_EPSILON)
     -> block mean.  For a 2x2 block and 1/3/4 channels the mean is rounded
     ``(sum + 2) >> 2`` (ties up); otherwise ``rint(float32(sum) * float32(1/area))``
     (float32 arithmetic, ties to even);
  3. ``scale_x >= 1 and scale_y >= 1`` otherwise -> true area averaging with float32
     weights; horizontal pass then vertical pass, accumulated in float32 in OpenCV's
     order, final ``rint`` (ties to even) and saturation to 0..255;
  4. any axis upscaled (``scale < 1``) -> OpenCV's "area-mode bilinear": for dst index
     ``d``: ``s = floor(d*scale)``, ``f = frac((d+1) - (s+1)/scale)`` (0 if <= 0), weights
     ``(1-f, f)`` on pixels ``s, s+1`` (edge clamped), converted to 11-bit fixed point
     (``rint(w*2048)``).  Horizontal pass in exact int32; vertical pass uses OpenCV's
     reduced-precision rounding ``(((b0*(H0>>4))>>16) + ((b1*(H1>>4))>>16) + 2) >> 2``.
* All intermediate arithmetic reproduces the C++ types (int32, float32, float64) so the
  results are identical to cv2 (default settings: IPP "not exact" mode off, no OpenCL).
"""
from __future__ import annotations

import numpy as np

__all__ = ["resize_area_to", "resized_hw", "resize_area", "preview_hw"]

_DBL_EPS = np.finfo(np.float64).eps
_COEF_SCALE = 2048  # INTER_RESIZE_COEF_SCALE = 1 << INTER_RESIZE_COEF_BITS (11)


# --------------------------------------------------------------------------- sizes
def resized_hw(size_hw, percent) -> tuple[int, int]:
    """Output (h, w) of the export-as-masks app's preview resize of an array of size ``size_hw``.

    The app does ``cv2.resize(a, (int(a.shape[1] * (P / 100)), int(a.shape[0] * (P / 100))),
    interpolation=cv2.INTER_AREA)`` where ``a`` is the side-by-side human preview
    (height H, width 2*W; see :func:`preview_hw`). The same float expression (divide
    first, multiply, truncate with ``int``) is used here, so 29 % of 100 is 28. A side may come out
    as 0, where cv2.resize raises: callers decide (``resize_area_to`` raises ValueError).
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    factor = percent / 100
    return int(h * factor), int(w * factor)


def preview_hw(image_hw) -> tuple[int, int]:
    """Size of the app's human preview: image and overlay side by side -> (H, 2*W)."""
    return int(image_hw[0]), 2 * int(image_hw[1])


def resize_area(image: np.ndarray, percent) -> np.ndarray:
    """``resize_area_to(image, resized_hw(image.shape[:2], percent))``."""
    return resize_area_to(image, resized_hw(image.shape[:2], percent))


# --------------------------------------------------------------------------- main
def resize_area_to(image: np.ndarray, size_hw) -> np.ndarray:
    """Bit-exact equivalent of ``cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)``."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TypeError("only uint8 images are supported")
    if img.ndim == 2:
        src = img[:, :, None]
    elif img.ndim == 3 and 1 <= img.shape[2] <= 4:
        src = img
    else:
        raise ValueError("expected (H, W) or (H, W, C) with C in 1..4")
    H, W, C = src.shape
    dh, dw = int(size_hw[0]), int(size_hw[1])
    if H <= 0 or W <= 0 or dh <= 0 or dw <= 0:
        raise ValueError("empty source or destination size")

    if (dh, dw) == (H, W):
        out = src.copy()
    else:
        inv_x, inv_y = dw / W, dh / H          # double, as in cv::resize
        scale_x, scale_y = 1.0 / inv_x, 1.0 / inv_y
        isx, isy = int(np.rint(scale_x)), int(np.rint(scale_y))
        is_int = abs(scale_x - isx) < _DBL_EPS and abs(scale_y - isy) < _DBL_EPS
        if scale_x >= 1 and scale_y >= 1:
            if is_int and H == isy * dh and W == isx * dw:
                out = _area_integer(src, isy, isx)
            else:
                out = _area_general(src, dh, dw, scale_y, scale_x)
        else:
            out = _area_bilinear(src, dh, dw, scale_y, scale_x, inv_y, inv_x)
    if img.ndim == 2 or C == 1:
        return out[:, :, 0]
    return out


# --------------------------------------------------------------------------- branch 2
def _area_integer(src, ky, kx):
    H, W, C = src.shape
    h, w = H // ky, W // kx
    acc_t = np.uint16 if kx * ky <= 257 else np.int32      # 255*area must fit
    rows = src.reshape(h, ky, W * C)
    s = rows[:, 0].astype(acc_t)
    for j in range(1, ky):                                   # sum the ky rows of a block
        s += rows[:, j]
    s = s.reshape(h, w, kx, C)
    t = s[:, :, 0].copy()
    for j in range(1, kx):                                   # then the kx columns
        t += s[:, :, j]
    if kx == 2 and ky == 2 and C != 2:   # ResizeAreaFastVec fast mode: (a+b+c+d+2)>>2
        t += 2
        t >>= 2
        return t.astype(np.uint8)
    scale = np.float32(1.0) / np.float32(kx * ky)            # float scale = 1.f/area
    v = t.astype(np.float32)
    v *= scale
    np.rint(v, out=v)
    np.clip(v, 0, 255, out=v)
    return v.astype(np.uint8)


# --------------------------------------------------------------------------- branch 3
def _area_table(ssize, dsize, scale):
    """Padded (dsize, M) source-index / float32-weight table of OpenCV's area decimation.

    Column order = OpenCV accumulation order (leading partial cell, whole cells, trailing
    partial cell); missing entries have weight 0 (adding +0.0 is exact)."""
    d = np.arange(dsize, dtype=np.float64)
    f1 = d * scale
    f2 = f1 + scale
    cell = np.minimum(scale, ssize - f1)
    s1 = np.ceil(f1).astype(np.int64)
    s2 = np.minimum(np.floor(f2).astype(np.int64), ssize - 1)
    s1 = np.minimum(s1, s2)
    nfull = s2 - s1
    kmax = int(nfull.max())
    M = kmax + 2
    idx = np.zeros((dsize, M), dtype=np.intp)
    wgt = np.zeros((dsize, M), dtype=np.float32)
    first = (s1 - f1) > 1e-3
    idx[:, 0] = np.where(first, s1 - 1, 0)
    wgt[:, 0] = np.where(first, ((s1 - f1) / cell).astype(np.float32), 0)
    j = np.arange(kmax)
    full = j[None, :] < nfull[:, None]
    idx[:, 1:M - 1] = np.where(full, s1[:, None] + j[None, :], 0)
    wgt[:, 1:M - 1] = np.where(full, (1.0 / cell).astype(np.float32)[:, None], 0)
    last = (f2 - s2) > 1e-3
    idx[:, M - 1] = np.where(last, s2, 0)
    wl = np.minimum(np.minimum(f2 - s2, 1.0), cell) / cell
    wgt[:, M - 1] = np.where(last, wl.astype(np.float32), 0)
    keep = wgt.any(axis=0)               # drop all-zero columns (no effect on sums)
    return idx[:, keep], wgt[:, keep]


def _col_index(idx, C):
    """Indices into a (rows, W*C) view for the pixels ``idx`` (all channels)."""
    return (idx[:, None] * C + np.arange(C)).ravel()


def _area_general(src, dh, dw, scale_y, scale_x):
    H, W, C = src.shape
    xi, xw = _area_table(W, dw, scale_x)
    yi, yw = _area_table(H, dh, scale_y)
    s2 = src.reshape(H, W * C)
    # horizontal pass, float32, OpenCV order: buf[dx] = ((0 + S[i0]*a0) + S[i1]*a1) + ...
    buf = np.zeros((H, dw * C), dtype=np.float32)
    g = np.empty((H, dw * C), dtype=np.uint8)
    tmp = np.empty_like(buf)
    for m in range(xi.shape[1]):
        np.take(s2, _col_index(xi[:, m], C), axis=1, out=g)
        np.multiply(g, np.repeat(xw[:, m], C)[None, :], out=tmp)
        buf += tmp
    del g, tmp
    # vertical pass, float32, OpenCV order: sum = beta0*buf[r0] + beta1*buf[r1] + ...
    acc = np.zeros((dh, dw * C), dtype=np.float32)
    tmp = np.empty_like(acc)
    for m in range(yi.shape[1]):
        np.take(buf, yi[:, m], axis=0, out=tmp)
        tmp *= yw[:, m, None]
        acc += tmp
    np.rint(acc, out=acc)                 # saturate_cast<uchar>(float): round half to even
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8).reshape(dh, dw, C)


# --------------------------------------------------------------------------- branch 4
def _fixed_coeffs(f):
    """saturate_cast<short>(cbuf[k] * INTER_RESIZE_COEF_SCALE) for cbuf = (1-f, f)."""
    c0 = np.float32(1.0) - f
    k = np.float32(_COEF_SCALE)
    a0 = np.clip(np.rint(c0 * k), -32768, 32767).astype(np.int32)
    a1 = np.clip(np.rint(f * k), -32768, 32767).astype(np.int32)
    return a0, a1


def _area_mode_pos(ssize, dsize, scale, inv):
    d = np.arange(dsize, dtype=np.int64)
    s = np.floor(d * scale).astype(np.int64)
    f = ((d + 1) - (s + 1) * inv).astype(np.float32)
    f = np.where(f <= 0, np.float32(0), f - np.floor(f)).astype(np.float32)
    return s, f


def _area_bilinear(src, dh, dw, scale_y, scale_x, inv_y, inv_x):
    H, W, C = src.shape
    # x coefficients (with OpenCV's right-edge clamp: s >= W-1 -> s = W-1, f = 0)
    sx, fx = _area_mode_pos(W, dw, scale_x, inv_x)
    right = sx >= W - 1
    sx = np.where(right, W - 1, np.maximum(sx, 0))
    fx = np.where(right, np.float32(0), fx).astype(np.float32)
    a0, a1 = _fixed_coeffs(fx)
    sx1 = np.minimum(sx + 1, W - 1)
    # y coefficients (rows are clipped, fy is kept as computed)
    sy, fy = _area_mode_pos(H, dh, scale_y, inv_y)
    b0, b1 = _fixed_coeffs(fy)
    r0 = np.clip(sy, 0, H - 1)
    r1 = np.clip(sy + 1, 0, H - 1)
    rows, inv_idx = np.unique(np.concatenate([r0, r1]), return_inverse=True)
    i0, i1 = inv_idx[:dh], inv_idx[dh:]
    s2 = src[rows].reshape(len(rows), W * C)
    # horizontal pass: exact int32 (HResizeLinear, ONE = 2048)
    hz = np.empty((len(rows), dw * C), dtype=np.int32)
    t = np.empty_like(hz)
    np.multiply(np.take(s2, _col_index(sx, C), axis=1), np.repeat(a0, C)[None, :], out=hz)
    np.multiply(np.take(s2, _col_index(sx1, C), axis=1), np.repeat(a1, C)[None, :], out=t)
    hz += t
    del t
    hz >>= 4                              # VResizeLinear first drops 4 bits (fits int16)
    # vertical pass: VResizeLinear<uchar,...> specialisation (SIMD-consistent rounding)
    out = np.take(hz, i0, axis=0)
    out *= b0[:, None]
    out >>= 16
    t = np.take(hz, i1, axis=0)
    t *= b1[:, None]
    t >>= 16
    out += t
    del t
    out += 2
    out >>= 2
    out = out.reshape(dh, dw, C)
    return out.astype(np.uint8)          # uchar(int): modulo-256 like C (never exceeds 255)
