"""benchmarks/payload.py: what travels to a GPU machine without network."""

from importlib.metadata import PackageNotFoundError, requires

import pytest
import torch
from conftest import REPO, benchmark_script
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from transformers import AutoModel

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the project supports 3.10, where this skips

payload = benchmark_script("payload")


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def _needed(image: set[str]) -> set[str]:
    """What bert_imdb and the benchmark's peers import, with everything those require on the GPU machine
    (Linux, Python 3.12), as this environment's installed packages declare it; a package the image has
    comes with what it requires there."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in (*project["dependencies"], *project["optional-dependencies"]["bench"])]
    seen: set[tuple[str, frozenset]] = set()
    machine = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
    machine |= {"platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"}
    while todo:
        requirement = todo.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name in image:
            continue
        try:
            declared = [Requirement(r) for r in requires(name) or []]
        except PackageNotFoundError:  # an optional dependency not installed here: not imported either
            continue
        for dependency in declared:
            marker = dependency.marker
            if marker is None or any(marker.evaluate({**machine, "extra": e}) for e in extras | {""}):
                todo.append(dependency)
    return {name for name, _ in seen}


def test_the_payload_carries_every_package_the_gpu_image_lacks():
    """The GPU machine has no network: a package it lacks and the payload does not carry stops gpu.sh
    there (seen: no datasets, jsonargparse or torchdata in its image)."""
    lines = (REPO / "benchmarks" / "device-packages.txt").read_text().splitlines()
    image = {_name(line) for line in lines if line and not line.startswith("#")}
    carried = {_name(wheel) for wheel in payload.WHEELS}
    missing = _needed(image) - image - carried
    assert not missing, f"add wheels of {sorted(missing)} to WHEELS in benchmarks/payload.py"
    assert {"datasets", "jsonargparse", "torchdata"} <= carried


def test_a_packed_model_unpacks_to_the_same_fp16_weights(tiny_model, tmp_path):
    payload.pack_model(tiny_model, tmp_path / "packed")
    assert not (tmp_path / "packed" / "model.safetensors").exists()
    payload.unpack_model(tmp_path / "packed", tmp_path / "model")
    original = AutoModel.from_pretrained(tiny_model)
    unpacked = AutoModel.from_pretrained(tmp_path / "model")
    for (name, expected), actual in zip(
        original.state_dict().items(), unpacked.state_dict().values(), strict=True
    ):
        assert torch.equal(actual, expected.half()), name


def test_a_payload_over_what_a_device_call_carries_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights").write_bytes(b"\0" * 3000)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a.whl").write_bytes(b"\0" * 2000)
    assert "wheels 0.0 MiB" in payload.check_size(tmp_path, limit=5000)
    with pytest.raises(
        SystemExit, match=r"payload .* is 0.0 MiB \(model 0.0 MiB, wheels 0.0 MiB\): over 0 MiB"
    ):
        payload.check_size(tmp_path, limit=4999)
