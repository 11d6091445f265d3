"""Geometry value objects, one per Supervisely 2-D geometry type.

Conventions:
- Coordinates are integer pixel indices: x = column, y = row, origin at the top-left pixel.
  Readers floor float coordinates before building these objects (the reference does the same).
- Point lists are ``int64`` arrays of shape (N, 2) in **xy** order (``*_xy`` names).
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


Geometry = (Polygon | Rectangle | Bitmap | AlphaMask | Polyline | Point | Graph | Cuboid2d
            | OrientedBBox | MultiPolygon | Cuboid)
