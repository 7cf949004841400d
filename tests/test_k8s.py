"""The Kubernetes manifests under docker/k8s/: every object validates against the Kubernetes
OpenAPI schemas (kubernetes-validate, offline: it ships them, strict: no unknown fields), and they
agree with the server's command line — probes on the health port, scrape annotations on the
metrics port, the ticket key from one Secret, data read-only, a grace period longer than the drain."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from arrowroot.flight_server.cli.main import main as cli

K8S = Path(__file__).resolve().parents[1] / "docker" / "k8s"
VERSION = "1.37.0"  # a current release; kubernetes-validate carries its schemas


def documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def objects(kind: str) -> list[dict]:
    return [d for _, d in documents() if d["kind"] == kind]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def pod(workload: dict) -> tuple[dict, dict]:
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def test_there_are_manifests() -> None:
    kinds = sorted(d["kind"] for _, d in documents())
    assert kinds == ["DaemonSet", "PersistentVolumeClaim", "Service", "Service", "StatefulSet"]


@pytest.mark.parametrize("name, doc", documents(), ids=lambda x: x if isinstance(x, str) else x["metadata"]["name"])
def test_manifest_validates_against_the_kubernetes_schemas(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_validator_refuses_a_broken_manifest() -> None:
    (sts,) = objects("StatefulSet")
    broken = yaml.safe_load(yaml.safe_dump(sts))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(sts))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_workloads_agree_with_the_command_line(kind: str) -> None:
    (workload,) = objects(kind)
    spec, c = pod(workload)
    args = c["args"]
    assert args[0] == "arrowroot" and args[1] == ("serve" if kind == "StatefulSet" else "node")
    # the options parse: the real CLI, --help of the subcommand lists every flag used
    help_text = cli.commands[args[1]].get_help(__import__("click").Context(cli.commands[args[1]]))
    for word in args[2:]:
        if word.startswith("--"):
            assert word in help_text, f"{word} is not an option of `arrowroot {args[1]}`"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    health = int(flag(args, "--health-port"))
    assert ports["health"] == health
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == health, f"{probe} must ask the gRPC health port"
    assert c["livenessProbe"]["grpc"]["service"] == "liveness"
    assert "service" not in c["readinessProbe"]["grpc"]  # "" = readiness of the whole server
    # Prometheus scrapes the port /metrics is on
    notes = workload["spec"]["template"]["metadata"]["annotations"]
    metrics = flag(args, "--http") if "--http" in args else flag(args, "--metrics-port")
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == metrics and notes["prometheus.io/path"] == "/metrics"
    assert int(metrics) in ports.values()
    # the ticket key from the one Secret; data read-only; requests; a grace longer than the drain
    env = {e["name"]: e for e in c["env"]}
    assert env["ARROWROOT_TICKET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "arrowroot-ticket-key", "key": "key"}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True and args[2] == "/data"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert spec["terminationGracePeriodSeconds"] > float(flag(args, "--drain-seconds")) + 5
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_the_coordinator_keeps_its_catalog_on_its_own_volume() -> None:
    (sts,) = objects("StatefulSet")
    spec, c = pod(sts)
    catalog = {e["name"]: e.get("value") for e in c["env"]}["ARROWROOT_CATALOG"]
    mount = next(m for m in c["volumeMounts"] if catalog.startswith(m["mountPath"] + "/"))
    assert mount["name"] in {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert sts["spec"]["replicas"] == 1  # one process owns the DuckDB file
    services = {s["metadata"]["name"]: s for s in objects("Service")}
    assert services[sts["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    (pvc,) = objects("PersistentVolumeClaim")
    assert data["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"], "readOnly": True}


def test_nodes_join_the_coordinator_service() -> None:
    (ds,) = objects("DaemonSet")
    (sts,) = objects("StatefulSet")
    _, node = pod(ds)
    _, coord = pod(sts)
    services = {s["metadata"]["name"]: s for s in objects("Service")}
    join = flag(node["args"], "--join")
    host, port = join.removeprefix("grpc://").split(":")
    service = services[host]
    assert service["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
    flight = next(p for p in service["spec"]["ports"] if p["port"] == int(port))
    assert flight["targetPort"] == "flight" and int(flag(coord["args"], "--port")) == int(port)
    assert flag(node["args"], "--advertise") == f"grpc://$(POD_IP):{flag(node['args'], '--port')}"
    assert {e["name"] for e in node["env"]} >= {"POD_IP", "NODE_NAME"}
