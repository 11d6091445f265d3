"""Image codecs: a fast PNG writer for masks and previews, and an image decoder that returns the
pixels the Supervisely SDK (OpenCV) reads. Pure functions on bytes and arrays; no file I/O."""

from .image import decode_image, image_size_hw
from .png import DEFAULT_DEFLATE, DEFLATE_BACKENDS, encode_png

__all__ = ["DEFAULT_DEFLATE", "DEFLATE_BACKENDS", "decode_image", "encode_png", "image_size_hw"]
