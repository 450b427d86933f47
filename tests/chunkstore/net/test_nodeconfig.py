"""The node config file parser (chunkstore.net.nodeconfig)."""

import json

import pytest

from chunkstore.errors import ConfigError
from chunkstore.net.nodeconfig import DiskEntry, Limits, NodeConfig

BASE = {"node_id": "n1", "secret_file": "secret", "disks": [{"id": "d0", "path": "d0"}]}


def _cfg(**changes):
    doc = {**BASE, **changes}
    return NodeConfig.from_dict({k: v for k, v in doc.items() if v is not ...}, base="/etc/sofs")


def test_defaults_and_relative_paths(tmp_path):
    cfg = _cfg()
    assert cfg.secret_file == "/etc/sofs/secret" and cfg.map_file == "/etc/sofs/clustermap.json"
    assert cfg.disks == (DiskEntry("d0", "/etc/sofs/d0"),)
    assert (cfg.host, cfg.port, cfg.cluster_id, cfg.map_epoch, cfg.limits) == ("127.0.0.1", 7700, None, 0, Limits())
    path = tmp_path / "node.json"
    path.write_text(json.dumps({**BASE, "port": 0, "cluster_id": "c1", "limits": {"max_requests": 4}}))
    cfg = NodeConfig.load(path)
    assert (cfg.port, cfg.cluster_id, cfg.limits.max_requests) == (0, "c1", 4)
    assert cfg.secret_file == str(tmp_path / "secret")


@pytest.mark.parametrize("changes,match", [
    ({"bogus": 1}, "unknown config keys: bogus"),
    ({"node_id": ...}, "'node_id' is required"),
    ({"disks": ...}, "'disks' is required"),
    ({"node_id": "n 1"}, "invalid node id"),
    ({"node_id": 5}, "must be a str"),
    ({"port": True}, "must be a int"),
    ({"port": 70000}, "port 70000 out of range"),
    ({"map_epoch": -1}, "map_epoch out of range"),
    ({"cluster_id": None}, "'cluster_id' must be a str"),
    ({"host": 1}, "'host' must be a str"),
    ({"disks": [{"id": "d0"}]}, "each disk must be"),
    ({"disks": [{"id": "d/0", "path": "x"}]}, "invalid disk id"),
    ({"disks": [{"id": "d0", "path": "a"}, {"id": "d0", "path": "b"}]}, "duplicate disk ids"),
    ({"limits": {"max_requests": 0}}, "limits.max_requests must be a positive number"),
    ({"limits": {"max_requests": 1.5}}, "must be an integer"),
    ({"limits": {"max_inflight_bytes": 1000}}, "at least 65536"),
    ({"limits": {"nope": 1}}, "limits:"),
    ({"limits": []}, "'limits' must be a dict"),
])
def test_invalid_configs_are_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**changes)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        NodeConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="cannot read config file"):
        NodeConfig.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="JSON object"):
        NodeConfig.from_dict([1, 2])
