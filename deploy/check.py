"""Offline checks of deploy/ that `make deploy-check` runs besides hadolint and checkov.

python deploy/check.py copies deploy/Dockerfile
    every source a COPY or ADD takes from the build context (the repository root) exists
python deploy/check.py manifests RENDERED.yaml ...
    each built-in kind against the Kubernetes JSON schemas of kubernetes-validate, strict
    (unknown fields fail); the operators' kinds, which it has no schema for, must be ones
    we expect and must name what they act on (a topic's cluster, a scaler's Deployment
    and topic); nothing is passed over with only a warning
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
K8S_VERSION = "1.33"

# The operators' kinds prod declares: kubernetes-validate knows only Kubernetes' own.
CRDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}


def _instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(p.strip() for p in pending if not p.strip().startswith("#"))
        pending = []
        word, _, rest = joined.partition(" ")
        yield start, word.upper(), rest.strip()


def copy_sources(dockerfile: Path) -> list[tuple[int, str]]:
    """(line, source) of every COPY/ADD source read from the build context."""
    found: list[tuple[int, str]] = []
    for line, word, rest in _instructions(dockerfile.read_text()):
        if word not in ("COPY", "ADD"):
            continue
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # from another stage or image, not from the context
        paths = [a for a in args if not a.startswith("--")]
        found.extend((line, source) for source in paths[:-1])
    return found


def check_copies(dockerfile: Path) -> list[str]:
    sources = copy_sources(dockerfile)
    if not sources:
        return [f"{dockerfile}: no COPY from the build context found"]
    return [
        f"{dockerfile}:{line}: COPY source {source} does not exist in {ROOT}"
        for line, source in sources
        if not list(ROOT.glob(source.rstrip("/")))
    ]


def _load(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    import yaml

    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _builtin(path: Path, doc: dict[str, Any]) -> list[str]:
    from kubernetes_validate import utils

    name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        utils.validate(doc, K8S_VERSION, strict=True)
    except utils.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        return [f"{name}: {where}: {exc.message}"]
    except utils.SchemaNotFoundError:
        return [f"{name}: no schema for {doc.get('apiVersion')} in Kubernetes {K8S_VERSION}"]
    return []


def _by_kind(docs: list[tuple[Path, dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == kind}


def _operator_kinds(path: Path, docs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """What a cluster with the operators would refuse or ignore, checked by reference."""
    problems: list[str] = []
    mine = [d for p, d in docs if p == path]
    kafkas = {d["metadata"]["name"] for d in mine if d["kind"] == "Kafka"}
    deployments = {d["metadata"]["name"] for d in mine if d["kind"] == "Deployment"}
    topics = {d["spec"]["topicName"]: d["spec"] for d in mine if d["kind"] == "KafkaTopic"}
    for doc in mine:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind != "HorizontalPodAutoscaler" and (doc.get("apiVersion"), kind) not in CRDS:
            continue  # a built-in (validated by schema) or an unknown kind (already an error)
        spec = doc.get("spec") or {}
        if kind in ("KafkaTopic", "KafkaNodePool"):
            cluster = doc["metadata"].get("labels", {}).get("strimzi.io/cluster")
            if cluster not in kafkas:
                problems.append(
                    f"{path.name}: {kind}/{name}: strimzi.io/cluster {cluster!r} "
                    "names no Kafka here"
                )
        if kind == "KafkaTopic" and not (
            isinstance(spec.get("partitions"), int) and isinstance(spec.get("replicas"), int)
        ):
            problems.append(f"{path.name}: KafkaTopic/{name}: partitions and replicas required")
        if kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            target = spec.get("scaleTargetRef", {}).get("name")
            if target not in deployments:
                problems.append(
                    f"{path.name}: {kind}/{name}: scales {target!r}, no such Deployment here"
                )
        if kind == "ScaledObject":
            for trigger in spec.get("triggers", []):
                topic = trigger.get("metadata", {}).get("topic")
                if trigger.get("type") != "kafka":
                    continue
                if topic not in topics:
                    problems.append(
                        f"{path.name}: ScaledObject/{name}: topic {topic!r} is no KafkaTopic here"
                    )
                elif spec.get("maxReplicaCount", 100) > topics[topic]["partitions"]:
                    problems.append(
                        f"{path.name}: ScaledObject/{name}: maxReplicaCount "
                        f"exceeds the {topics[topic]['partitions']} partitions "
                        f"of {topic}: the extra consumers would idle"
                    )
        if kind == "Cluster" and not isinstance(spec.get("instances"), int):
            problems.append(f"{path.name}: Cluster/{name}: instances required")
    return problems


def check_manifests(paths: list[Path]) -> list[str]:
    docs = _load(paths)
    problems: list[str] = []
    for path, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRDS:
            continue
        problems.extend(_builtin(path, doc))
    for path in paths:
        problems.extend(_operator_kinds(path, docs))
    checked = sum(1 for _, d in docs if (d.get("apiVersion"), d.get("kind")) not in CRDS)
    print(
        f"{checked} resources validated against Kubernetes {K8S_VERSION} (strict), "
        f"{len(docs) - checked} operator resources checked by reference"
    )
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("copies", "manifests"):
        print(__doc__, file=sys.stderr)
        return 2
    paths = [Path(a) for a in argv[1:]]
    problems = check_copies(paths[0]) if argv[0] == "copies" else check_manifests(paths)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems and argv[0] == "copies":
        print(f"{paths[0]}: every COPY source exists")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
