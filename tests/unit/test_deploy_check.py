"""deploy/check.py, the offline checks `make deploy-check` runs on the image and manifests:
each problem it exists for is caught, and the real files pass."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy/check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _check()


def test_copy_sources_are_read_across_lines_and_forms_and_other_stages_are_left_out(
    tmp_path: Path,
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python AS build\n"
        "# COPY commented.txt /x\n"
        "COPY pyproject.toml \\\n    constraints.txt ./\n"
        'COPY ["migrations", "/m"]\n'
        "COPY --from=build /opt/venv /opt/venv\n"
        "ADD --chown=1:1 no/such/dir /x\n"
    )
    assert check.copy_sources(dockerfile) == [
        (3, "pyproject.toml"),
        (3, "constraints.txt"),
        (5, "migrations"),
        (7, "no/such/dir"),
    ]
    assert check.check_copies(dockerfile) == [
        f"{dockerfile}:7: COPY source no/such/dir does not exist in {ROOT}"
    ]


def test_the_real_dockerfile_copies_only_what_exists() -> None:
    assert check.check_copies(ROOT / "deploy/Dockerfile") == []


def _write(tmp_path: Path, *docs: dict[str, object]) -> Path:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_an_unknown_field_an_unknown_kind_and_a_scaler_past_the_partitions_fail(
    tmp_path: Path,
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "rater-worker"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]},
            },
        },
    }
    topic = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": "t", "labels": {"strimzi.io/cluster": "nosuch"}},
        "spec": {"topicName": "cdr.submitted.v1", "partitions": 2, "replicas": 3},
    }
    scaler = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "s"},
        "spec": {
            "scaleTargetRef": {"name": "rater-worker"},
            "maxReplicaCount": 4,
            "triggers": [{"type": "kafka", "metadata": {"topic": "cdr.submitted.v1"}}],
        },
    }
    typo = {"apiVersion": "keda.sh/v1", "kind": "ScaledObject", "metadata": {"name": "x"}}
    problems = check.check_manifests([_write(tmp_path, deployment, topic, scaler, typo)])
    assert len(problems) == 4, problems
    assert "imagePolicy" in problems[0]
    assert "no schema for keda.sh/v1" in problems[1]
    assert "names no Kafka here" in problems[2]
    assert "exceeds the 2 partitions" in problems[3]
