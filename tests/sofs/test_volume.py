"""Volume configs (sofs.volume): created, loaded back, and a damaged volume.json refused with a
message that names the file and the field."""

from __future__ import annotations

import json

import pytest

from sofs.errors import VolumeError
from sofs.volume import VolumeConfig, create_volume, load_volume, volume_dir


def _config_path(tmp_path):
    return volume_dir(tmp_path, "v") / "volume.json"


def test_a_created_volume_loads_back(tmp_path):
    made = create_volume(tmp_path, "v", block_size=1 << 20, zstd_level=3)
    assert load_volume(tmp_path, "v") == made
    assert VolumeConfig.from_json(made.to_json()) == made


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(block_size="4M"), "block_size must be int, not str ('4M')"),
    (lambda d: d.update(threshold=True), "threshold must be int, not bool"),
    (lambda d: d.update(created="yesterday"), "created must be int or float, not str"),
    (lambda d: d.update(name=7), "name must be str, not int"),
    (lambda d: d.update(small_policy=None), "small_policy must be str, not NoneType"),
    (lambda d: d.update(colour="blue", shape=1), "unknown field(s): colour, shape"),
    (lambda d: d.pop("uuid"), "lacks field(s): uuid"),
    (lambda d: d.update(version=2), "unknown version"),
    (lambda d: d.update(uuid="not-a-uuid"), "is not a UUID"),
    (lambda d: d.update(block_size=3000), "power of two"),
    (lambda d: d.update(zstd_level=99), "zstd level"),
    (lambda d: d.update(name="../x"), "bad volume name"),
])
def test_a_bad_volume_json_is_refused_clearly(tmp_path, edit, message):
    create_volume(tmp_path, "v")
    path = _config_path(tmp_path)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(VolumeError) as ei:
        load_volume(tmp_path, "v")
    assert str(path) in str(ei.value) and message in str(ei.value)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "holds list, not an object"),
    ("", "not JSON"),
])
def test_a_volume_json_that_is_no_config_at_all(tmp_path, text, message):
    create_volume(tmp_path, "v")
    _config_path(tmp_path).write_text(text)
    with pytest.raises(VolumeError, match=message):
        load_volume(tmp_path, "v")


def test_an_integer_creation_time_is_accepted(tmp_path):
    made = create_volume(tmp_path, "v")
    path = _config_path(tmp_path)
    doc = json.loads(path.read_text())
    doc["created"] = 1700000000
    path.write_text(json.dumps(doc))
    assert load_volume(tmp_path, "v").created == 1700000000
    assert load_volume(tmp_path, "v").uuid == made.uuid


def test_create_volume_still_refuses_bad_settings(tmp_path):
    with pytest.raises(VolumeError, match="bad volume name"):
        create_volume(tmp_path, "-x")
    with pytest.raises(VolumeError, match="block size"):
        create_volume(tmp_path, "v", block_size=1000)
    with pytest.raises(VolumeError, match="zstd level"):
        create_volume(tmp_path, "v", zstd_level=23)
    assert not volume_dir(tmp_path, "v").exists()
