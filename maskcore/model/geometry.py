"""Geometry value objects, one per Supervisely 2-D geometry type.

Conventions:
- x = column, y = row. Two coordinate kinds, told apart by the array dtype:
  * ``int64``: pixel indices, origin at the centre of the top-left pixel. The Supervisely reader
    floors float coordinates into these (the reference does the same).
  * ``float64``: continuous coordinates as COCO and CVAT store them, origin at the top-left
    *corner* of the image (pixel (c, r) is the square [c, c+1) x [r, r+1)). The drawing rule
    decides how they become pixels (``maskcore.draw``): the COCO/CVAT rule uses them as they are,
    the OpenCV rule floors them first.
- Point lists are arrays of shape (N, 2) in **xy** order (``*_xy`` names).
- Objects are immutable, hold no file handles and never read anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def as_xy(points) -> np.ndarray:
    """Points as a (N, 2) int64 array in xy order (floor of floats)."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.floor(arr).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Polygon:
    exterior_xy: np.ndarray
    interiors_xy: tuple[np.ndarray, ...] = ()
    geometry_type = "polygon"


@dataclass(frozen=True, eq=False)
class Rectangle:
    """Axis-aligned box; both corners inclusive, normalised so x0 <= x1 and y0 <= y1."""
    x0: int
    y0: int
    x1: int
    y1: int
    geometry_type = "rectangle"


@dataclass(frozen=True, eq=False)
class Box:
    """A COCO / CVAT box: the half-open float area [x0, x1) x [y0, y1) (corner origin), rotated
    by ``angle`` degrees clockwise on screen about its centre (CVAT's ``rotation``).

    Always drawn by the COCO rule (pycocotools ``frBbox`` of its corners), whichever rule the
    layout uses: an axis-aligned box with integer corners covers columns x0 .. x1-1 and rows
    y0 .. y1-1, as COCO and CVAT users expect.
    """
    x0: float
    y0: float
    x1: float
    y1: float
    angle: float = 0.0
    geometry_type = "box"

    def corners_xy(self) -> np.ndarray:
        """The (4, 2) float64 corners, rotated about the centre."""
        ring = np.array([[self.x0, self.y0], [self.x0, self.y1], [self.x1, self.y1],
                         [self.x1, self.y0]], dtype=np.float64)
        if self.angle:
            a = np.deg2rad(self.angle)
            c, s = np.cos(a), np.sin(a)
            cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
            dx, dy = ring[:, 0] - cx, ring[:, 1] - cy
            ring = np.stack([cx + dx * c - dy * s, cy + dx * s + dy * c], axis=1)
        return ring


@dataclass(frozen=True, eq=False)
class Bitmap:
    """Binary mask; ``origin_xy`` is the canvas pixel of ``mask[0, 0]``."""
    origin_xy: tuple[int, int]
    mask: np.ndarray  # bool (h, w)
    geometry_type = "bitmap"


@dataclass(frozen=True, eq=False)
class AlphaMask:
    """Grey mask 0..255 blended with weight value/255; ``origin_xy`` as for Bitmap."""
    origin_xy: tuple[int, int]
    alpha: np.ndarray  # uint8 (h, w)
    geometry_type = "alpha_mask"


@dataclass(frozen=True, eq=False)
class Polyline:
    points_xy: np.ndarray
    geometry_type = "line"


@dataclass(frozen=True, eq=False)
class Point:
    x: int
    y: int
    geometry_type = "point"


@dataclass(frozen=True, eq=False)
class GraphNode:
    node_id: str
    x: int
    y: int
    disabled: bool = False


@dataclass(frozen=True, eq=False)
class Graph:
    """Keypoints; node ids refer to the class template (``geometry_config``)."""
    nodes: tuple[GraphNode, ...]
    geometry_type = "graph"


CUBOID_2D_VERTICES = (
    "face1-topleft", "face1-topright", "face1-bottomright", "face1-bottomleft",
    "face2-topleft", "face2-topright", "face2-bottomright", "face2-bottomleft",
)


@dataclass(frozen=True, eq=False)
class Cuboid2d:
    """8 vertices in ``CUBOID_2D_VERTICES`` order (face1 = front, face2 = back)."""
    vertices_xy: np.ndarray  # (8, 2)
    geometry_type = "cuboid_2d"


@dataclass(frozen=True, eq=False)
class OrientedBBox:
    """Box ``left..right`` x ``top..bottom`` rotated by ``angle`` radians clockwise on screen."""
    left: int
    top: int
    right: int
    bottom: int
    angle: float
    geometry_type = "oriented_bbox"


@dataclass(frozen=True, eq=False)
class MultiPolygon:
    parts: tuple[Polygon, ...]
    geometry_type = "multipolygon"


@dataclass(frozen=True, eq=False)
class Cuboid:
    """Legacy cuboid: points plus faces, each face a tuple of point indices."""
    points_xy: np.ndarray
    faces: tuple[tuple[int, ...], ...] = field(default=())
    geometry_type = "cuboid"


Geometry = (Polygon | Rectangle | Box | Bitmap | AlphaMask | Polyline | Point | Graph | Cuboid2d
            | OrientedBBox | MultiPolygon | Cuboid)
