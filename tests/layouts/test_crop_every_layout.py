"""The load-time crop (option ``crop``, default ``sdk``) in every layout that draws Supervisely sources.

Oracle: the same project loaded and re-saved through the Supervisely SDK (``sly.Annotation`` crops
every label when it loads one). Exporting the original with ``crop=sdk`` must give the very bytes of
exporting the SDK's re-saved copy, for every mask file of every layout; ``crop=none`` must not (the
border projects are built so that the crop changes pixels).
"""

from __future__ import annotations

import pytest

from helpers.oracles import oracle
from maskcore.exec.run import EXIT_OK, ExportConfig, run_export
from oracle.make_projects import make_border_project
from oracle.sly_reference import resave_through_sdk

sly = oracle("supervisely")

LAYOUTS = {
    "supervisely": {"masks": "machine,semantic,human,instance"},
    "isahit": {"name": "out"},
    "cvat": {},
    "save_masks": {"masks_machine": True, "masks_human": True,
                   "gt_machine_color": {"poly": [10, 10, 10], "rect": [20, 20, 20], "bmp": [30, 30, 30],
                                        "alpha": [40, 40, 40], "line": [50, 50, 50], "pt": [60, 60, 60],
                                        "skeleton": [70, 70, 70], "mpoly": [80, 80, 80], "box3d": [90, 90, 90]},
                   "gt_human_color": {"poly": [200, 0, 0], "bmp": [0, 200, 0], "line": [0, 0, 200],
                                      "mpoly": [200, 200, 0], "skeleton": [0, 0, 0]}},
}


def _masks(dst, result) -> dict[str, str]:
    """{path: sha256} of every written file but the annotation copies (their JSON differs)."""
    return {o["path"]: o["sha256"] for row in result.manifest.to_pylist() for o in row["outputs"]
            if "/ann/" not in f"/{o['path']}"}


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    root = tmp_path_factory.mktemp("crop")
    original = make_border_project(root / "original", seed=7, n_items=6, size_hw=(40, 56))
    return original, resave_through_sdk(original, root / "resaved")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_crop_sdk_equals_the_sdk_loaded_project(layout, projects, tmp_path, dask_client):
    original, resaved = projects

    def export(src, dst, **extra):
        cfg = ExportConfig(source=str(src), destination=str(dst), layout=layout,
                           layout_options={**LAYOUTS[layout], **extra}, archive=False)
        result = run_export(cfg, log=lambda m: None, client=dask_client)
        assert result.exit_code == EXIT_OK, result.report["failures"]
        return _masks(dst, result)

    ours, sdk = export(original, tmp_path / "a"), export(resaved, tmp_path / "b")
    assert ours and ours == sdk, sorted(p for p in set(ours) | set(sdk) if ours.get(p) != sdk.get(p))[:10]
    uncropped = export(original, tmp_path / "c", crop="none")
    assert uncropped != ours, "the border project must be one where the crop changes the masks"
