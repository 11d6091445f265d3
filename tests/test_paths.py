"""maskcore/paths.py: names that differ only by Unicode normalisation or case are twins."""

from __future__ import annotations

import shutil
import unicodedata

import maskcore
from maskcore.paths import fold, unique_names

NFC, NFD = (unicodedata.normalize(form, "café.jpg") for form in ("NFC", "NFD"))


def test_nfc_and_nfd_twins_get_distinct_names_that_stay_distinct_when_normalised():
    assert NFC != NFD and fold(NFC) == fold(NFD)
    out = unique_names([NFC, NFD, "other.jpg"], [NFC, NFD, "other.jpg"])
    assert out[2] == "other.jpg"
    assert len({fold(n) for n in out}) == 3, out


def test_an_export_of_nfc_nfd_twins_writes_outputs_that_no_normalising_store_merges(samples, tmp_path):
    src = tmp_path / "src"
    (src / "ds" / "img").mkdir(parents=True)
    (src / "ds" / "ann").mkdir()
    shutil.copy(samples / "vector" / "meta.json", src / "meta.json")
    for name in (NFC, NFD):
        shutil.copy(samples / "vector" / "ds" / "img" / "dog1.jpg", src / "ds" / "img" / name)
        shutil.copy(samples / "vector" / "ds" / "ann" / "dog1.jpg.json", src / "ds" / "ann" / f"{name}.json")
    result = maskcore.export(src, tmp_path / "out", masks=["machine"])
    assert result.exit_code == 0 and result.report["items"]["written"] == 2
    paths = [o["path"] for row in result.manifest.to_pylist() for o in row["outputs"]]
    assert len({fold(p) for p in paths}) == len(paths), paths
