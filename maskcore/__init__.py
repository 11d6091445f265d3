"""maskcore: labelled image projects to segmentation masks, partitioned across Dask workers.

The public API (everything else is internal and may change)::

    import maskcore
    result = maskcore.export("proj/", "out/", layout="supervisely", masks=["machine", "instance"])
    project = maskcore.open_project("annotations.json", images="imgs/")
    masks = project.masks(next(project.items()))            # numpy arrays, no files
    mask = maskcore.rasterize([polygon_xy], size_hw=(h, w), rule="coco")

Names are imported on first use, so ``import maskcore`` stays light (no Dask until an export).
"""

__version__ = "0.1.0"

__all__ = ["ExportConfig", "Item", "Masks", "Project", "RunResult", "export", "open_project", "rasterize",
           "__version__"]

_API = {"export": "api", "open_project": "api", "rasterize": "api", "Project": "api", "Item": "api",
        "Masks": "api", "ExportConfig": "exec.run", "RunResult": "exec.run"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'maskcore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
