"""The merge of a user's DaskCluster over maskcore's (kubespec.merge_spec), on literal mappings."""

from __future__ import annotations

import copy

import pytest

from maskcore.errors import ConfigError
from maskcore.exec.kubespec import drop_nulls, load_custom_spec, merge_spec

BASE = {"metadata": {"name": "a"},
        "spec": {"containers": [{"name": "worker", "args": ["dask", "worker"], "env": [{"name": "X", "value": "1"}]}],
                 "tolerations": [{"key": "k1"}]}}


def test_maps_merge_by_key_named_lists_by_name_other_lists_are_replaced():
    over = {"metadata": {"labels": {"team": "v"}},
            "spec": {"containers": [{"name": "worker",
                                     "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]},
                                    {"name": "sidecar", "image": "busybox"}],
                     "tolerations": [{"key": "k2"}]}}
    before = copy.deepcopy(BASE)
    merged = merge_spec(BASE, over)
    assert BASE == before                                                  # inputs untouched
    assert merged["metadata"] == {"name": "a", "labels": {"team": "v"}}
    worker, sidecar = merged["spec"]["containers"]
    assert worker == {"name": "worker", "args": ["dask", "worker"],
                      "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]}
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert merged["spec"]["tolerations"] == [{"key": "k2"}]                # unnamed items: the list is replaced
    assert merge_spec(BASE, {"spec": {"containers": []}})["spec"]["containers"] == []


def test_nulls_are_dropped_at_every_level():
    assert drop_nulls({"a": None, "b": [{"c": None, "d": 1}], "e": {"f": None}}) == {"b": [{"d": 1}], "e": {}}


def test_custom_spec_from_a_file_or_a_mapping(tmp_path):
    (tmp_path / "c.yaml").write_text("metadata: {name: b}\n")
    assert load_custom_spec(str(tmp_path / "c.yaml"), "p") == {"metadata": {"name": "b"}}
    assert load_custom_spec(None, "p") == {}
    with pytest.raises(ConfigError, match=r"p: expected kubernetes.custom-cluster-spec to name a readable YAML file"):
        load_custom_spec(str(tmp_path / "missing.yaml"), "p")
    with pytest.raises(ConfigError, match=r"expected .* as a mapping \(a DaskCluster\) or a YAML file, got list"):
        load_custom_spec([1], "p")
