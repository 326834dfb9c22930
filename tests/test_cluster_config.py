"""cluster/aws.yaml: Ray's own schema accepts it offline, it is secure by default, and it installs us.

`ray up` first fills in Ray's AWS defaults (`prepare_config`) and validates the result against Ray's
JSON schema (`validate_config`); only then does it call AWS. The tests run those two steps with the
network switched off, so they need neither boto3 nor credentials.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster" / "aws.yaml"


@pytest.fixture
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network (AWS included) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"cluster config validation tried to use the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _prepared(cluster: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    return prepared


def test_ray_accepts_the_file_offline(cluster, offline):
    imported_before = set(sys.modules)
    validate_config(copy.deepcopy(cluster))  # the file as written
    prepared = _prepared(cluster)  # what `ray up` validates before it calls AWS
    assert prepared["head_node_type"] == "head"
    assert not {"boto3", "botocore"} & (set(sys.modules) - imported_before)


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        ((), "max_worker"),
        (("available_node_types", "gpu"), "min_worker"),
        (("auth",), "ssh_usr"),
    ],
)
def test_an_unknown_key_fails_validation(cluster, offline, path, typo):
    broken = copy.deepcopy(cluster)
    node = broken
    for key in path:
        node = node[key]
    node[typo] = 3
    with pytest.raises(jsonschema.ValidationError, match=typo):
        validate_config(broken)


def test_a_wrongly_typed_value_fails_validation(cluster, offline):
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu"]["max_workers"] = "sixteen"
    with pytest.raises(jsonschema.ValidationError, match="sixteen"):
        validate_config(broken)


def test_nothing_is_open_to_the_world(cluster, offline):
    # Ray creates its own group (SSH from 0.0.0.0/0) for any node type without SecurityGroupIds.
    for name, node_type in cluster["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), f"node type {name} has no SecurityGroupIds"
    assert "security_group" not in cluster["provider"]
    # Ray's default start command binds the dashboard to 0.0.0.0: ours must replace it, and no
    # address may be open to every host, in the file or in the defaults Ray fills in.
    prepared = json.dumps(_prepared(cluster))
    assert "0.0.0.0" not in prepared and "::/0" not in prepared
    head_start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start


def test_every_node_starts_ray_with_token_authentication(cluster):
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [line for line in cluster[commands] if "ray start" in line]
        assert starts and all("RAY_AUTH_MODE=token" in line for line in starts), commands
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_node_groups_match_their_roles(cluster):
    nodes = cluster["available_node_types"]
    head = nodes[cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0
    gpu, cpu = nodes["gpu"], nodes["cpu_spot"]
    assert re.match(r"(g5|g6|g6e|p4d|p5)\.", gpu["node_config"]["InstanceType"])
    assert "InstanceMarketOptions" not in gpu["node_config"]  # loops keep their model for 50 generations
    assert re.match(r"c7i\.", cpu["node_config"]["InstanceType"])
    assert cpu["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    for name in ("gpu", "cpu_spot"):
        assert 0 <= nodes[name]["min_workers"] <= nodes[name]["max_workers"] <= cluster["max_workers"], name
    assert nodes["gpu"]["max_workers"] + nodes["cpu_spot"]["max_workers"] <= cluster["max_workers"]
    assert cluster["provider"]["cache_stopped_nodes"] is False  # stopped nodes keep billing their disks


def test_setup_installs_the_project_and_this_ray(cluster):
    setup = "\n".join(cluster["setup_commands"])
    pins = re.findall(r'"ray\[[a-z,]+\]==([0-9.]+)"', setup)
    assert pins == [ray.__version__], f"the cluster must run Ray {ray.__version__} like this machine, got {pins}"
    assert "pip install -q -e ~/scl-ray" in setup
    assert "boto3" in " ".join(cluster["head_setup_commands"])
    for remote, local in cluster["file_mounts"].items():
        if remote.startswith("~/scl-ray/"):
            assert (ROOT / local).exists(), f"file_mounts {remote}: {local} is missing in the repository"
