"""deploy/kubernetes/: every manifest validates offline against the Kubernetes schemas, and the
manifests agree with each other and with the real command lines.

The schemas are the ones the `kubernetes-validate` package ships (no cluster, no network), in
strict mode (an unknown or misspelt field is an error, as `kubectl apply --validate=strict`
would say), for one pinned Kubernetes version. The schemas cannot see what spans documents,
so the rest is checked here: every ConfigMap and Secret a pod uses exists (with the keys it
uses), every mount names a volume, Services select pods and name their ports, NetworkPolicies
select pods, every pod runs hardened, and the containers' arguments are accepted by the real
programs: the Python CLIs' own parsers, the native services' `--help`.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# Native sidecars (init containers with restartPolicy: Always) are GA from 1.33.
KUBERNETES_VERSION = "1.33"
NAMESPACE = "zt"
TRUST_DOMAIN = "zt.lab"

Doc = dict[str, Any]


def load_documents() -> list[tuple[str, Doc]]:
    docs = []
    for f in sorted(MANIFESTS.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d is not None:
                docs.append((f.name, d))
    return docs


DOCS = load_documents()


def ident(d: Doc) -> str:
    return f"{d['kind']}/{d['metadata']['name']}"


def of_kind(kind: str) -> list[Doc]:
    return [d for _, d in DOCS if d["kind"] == kind]


def pod_templates() -> Iterator[tuple[str, Doc, Doc]]:
    """(workload name, pod template metadata, pod spec) for every workload."""
    for _, d in DOCS:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = d["spec"]["template"]
            yield d["metadata"]["name"], t.get("metadata", {}), t["spec"]


def all_containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def test_the_manifests_exist() -> None:
    kinds = {d["kind"] for _, d in DOCS}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"} <= kinds, kinds
    assert {name for name, _, _ in pod_templates()} == {"zt-ra", "service-a", "service-b"}


@pytest.mark.parametrize("doc", [d for _, d in DOCS], ids=[f"{f}:{ident(d)}" for f, d in DOCS])
def test_manifest_validates_strictly_against_the_pinned_kubernetes_schema(doc: Doc) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{ident(doc)}: {e.message} at {'.'.join(str(p) for p in e.path)}")


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The check above can fail: the same Deployment with one field misspelt does not validate."""
    deployment = json.loads(json.dumps(next(d for d in of_kind("Deployment"))))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_namespaced_object_is_in_the_zt_namespace() -> None:
    for _, d in DOCS:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, ident(d)
    assert [d["metadata"]["name"] for d in of_kind("Namespace")] == [NAMESPACE]


def keys_of(d: Doc) -> set[str]:
    return set(d.get("data", {})) | set(d.get("stringData", {})) | set(d.get("binaryData", {}))


def references(spec: Doc) -> Iterator[tuple[str, str, list[str]]]:
    """(kind, name, keys used) for every ConfigMap and Secret a pod spec uses."""
    for v in spec.get("volumes", []):
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]["name"], [i["key"] for i in v["configMap"].get("items", [])]
        if "secret" in v:
            yield "Secret", v["secret"]["secretName"], [i["key"] for i in v["secret"].get("items", [])]
        for src in v.get("projected", {}).get("sources", []):
            if "configMap" in src:
                yield "ConfigMap", src["configMap"]["name"], [i["key"] for i in src["configMap"].get("items", [])]
            if "secret" in src:
                yield "Secret", src["secret"]["name"], [i["key"] for i in src["secret"].get("items", [])]
    for c in all_containers(spec):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"], [ref["configMapKeyRef"]["key"]]
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"], [ref["secretKeyRef"]["key"]]
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                yield "ConfigMap", e["configMapRef"]["name"], []
            if "secretRef" in e:
                yield "Secret", e["secretRef"]["name"], []


def test_every_configmap_and_secret_a_pod_uses_exists_with_its_keys() -> None:
    defined = {(d["kind"], d["metadata"]["name"]): keys_of(d) for _, d in DOCS if d["kind"] in ("ConfigMap", "Secret")}
    seen = 0
    for name, _, spec in pod_templates():
        for kind, ref, keys in references(spec):
            seen += 1
            assert (kind, ref) in defined, f"{name} uses {kind} {ref}, which no manifest defines"
            missing = set(keys) - defined[(kind, ref)]
            has = sorted(defined[(kind, ref)])
            assert not missing, f"{name} uses keys {sorted(missing)} of {kind} {ref}, which has {has}"
    assert seen >= 10


def test_every_mount_names_a_volume_of_its_pod_and_every_volume_is_used() -> None:
    for name, _, spec in pod_templates():
        volumes = {v["name"] for v in spec.get("volumes", [])}
        used = set()
        for c in all_containers(spec):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{name}/{c['name']} mounts {m['name']}, not a volume of the pod"
                used.add(m["name"])
        assert used == volumes, f"{name}: volumes nobody mounts: {sorted(volumes - used)}"


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_a_pod_and_target_a_named_port_it_has() -> None:
    for svc in of_kind("Service"):
        sname = svc["metadata"]["name"]
        pods = [spec for _, meta, spec in pod_templates() if matches(svc["spec"]["selector"], meta.get("labels", {}))]
        assert pods, f"Service {sname} selects no pod"
        for port in svc["spec"]["ports"]:
            names = {p.get("name") for spec in pods for c in all_containers(spec) for p in c.get("ports", [])}
            assert port["targetPort"] in names, f"Service {sname}: no container port {port['targetPort']}"


def test_network_policies_deny_by_default_and_select_real_pods() -> None:
    policies = of_kind("NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    labels = [meta.get("labels", {}) for _, meta, _ in pod_templates()]
    for p in policies:
        sel = p["spec"]["podSelector"].get("matchLabels", {})
        assert any(matches(sel, lab) for lab in labels), f"NetworkPolicy {p['metadata']['name']} selects no pod"
        for rule in [*p["spec"].get("ingress", []), *p["spec"].get("egress", [])]:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    sel = peer["podSelector"].get("matchLabels", {})
                    where = p["metadata"]["name"]
                    assert any(matches(sel, lab) for lab in labels), f"{where}: peer {sel} selects no pod"


def test_the_mesh_mirrors_compose_networks() -> None:
    """Only workloads reach the RA pod (pki); the services reach each other on the mTLS ports (mesh)."""
    by_name = {p["metadata"]["name"]: p for p in of_kind("NetworkPolicy")}
    ra_in = by_name["pki-ingress"]["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"] for r in ra_in for peer in r["from"]] == [{"zt.lab/role": "workload"}]
    assert sorted(p["port"] for r in ra_in for p in r["ports"]) == [8443, 8444]
    for svc, peer, port in (("service-a", "service-b", 8080), ("service-b", "service-a", 8081)):
        ingress = by_name[f"mesh-{svc}"]["spec"]["ingress"]
        assert [x["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in ingress for x in r["from"]] == [peer]
        assert [p["port"] for r in ingress for p in r["ports"]] == [port]


def test_every_pod_and_container_runs_hardened() -> None:
    for name, _, spec in pod_templates():
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for c in all_containers(spec):
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert "privileged" not in sc or sc["privileged"] is False, where


def test_the_ca_key_is_only_in_the_ra_container_and_read_only() -> None:
    for name, _, spec in pod_templates():
        key_volumes = {
            v["name"] for v in spec.get("volumes", []) if v.get("secret", {}).get("secretName") == "zt-ca-intermediate"
        }
        for c in all_containers(spec):
            for m in c.get("volumeMounts", []):
                if m["name"] in key_volumes:
                    assert (name, c["name"]) == ("zt-ra", "ra"), f"{name}/{c['name']} mounts the CA key"
                    assert m.get("readOnly") is True


# --- the containers' arguments against the real programs ---------------------------------


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args, with the container's env (placeholders for refs)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def container_env(c: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "0" * 64 + "  bundle.pem") for e in c.get("env", [])}


def python_parser(image: str) -> Any:
    if image.startswith("zt-agent:"):
        from zt.agent.main import build_parser as agent

        return agent()
    if image.startswith("zt-ra:"):
        from zt.ra.main import build_parser as ra

        return ra()
    if image.startswith("zt-crl:"):
        from zt.crl.main import build_parser as crl

        return crl()
    return None


def native_flags(binary: str) -> set[str]:
    path = ROOT / "build" / binary
    assert path.exists(), f"{path} is missing: build it (./native/cpp/build.sh, ./native/java/build.sh)"
    r = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60)
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", r.stdout + r.stderr))
    assert "--cert-dir" in flags, r.stdout + r.stderr
    return flags


PROGRAM_CONTAINERS = [
    (name, c) for name, _, spec in pod_templates() for c in all_containers(spec) if "command" not in c
]


@pytest.mark.parametrize("name, c", PROGRAM_CONTAINERS, ids=[f"{n}/{c['name']}" for n, c in PROGRAM_CONTAINERS])
def test_container_args_are_flags_the_real_program_accepts(name: str, c: Doc) -> None:
    env = container_env(c)
    args = [expand(a, env) for a in c.get("args", [])]
    parser = python_parser(c["image"])
    if parser is not None:
        try:
            parser.parse_args(args)
        except SystemExit as e:
            pytest.fail(f"{name}/{c['name']}: {c['image'].split(':')[0]} refuses {args} (exit {e.code})")
        return
    binary = {"zt-service-a": "service-a", "zt-service-b": "service-b"}[c["image"].split(":")[0]]
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    unknown = given - native_flags(binary)
    assert not unknown, f"{name}/{c['name']}: {binary} has no {sorted(unknown)}"


def test_agents_pin_the_bundle_and_the_services_enforce_the_policy() -> None:
    """CONTRACT B and P in the manifests: every agent has --bundle-sha256 from the pin
    ConfigMap; every service runs with --policy on the mounted mesh policy."""
    agents = services = 0
    for name, _, spec in pod_templates():
        for c in all_containers(spec):
            image = c["image"].split(":")[0]
            args = c.get("args", [])
            if image == "zt-agent":
                agents += 1
                pin = [a for a in args if a.startswith("--bundle-sha256=")]
                assert pin == ["--bundle-sha256=$(ZT_BUNDLE_SHA256)"], f"{name}: {args}"
                ref = next(e for e in c["env"] if e["name"] == "ZT_BUNDLE_SHA256")["valueFrom"]["configMapKeyRef"]
                assert ref == {"name": "zt-trust-pin", "key": "bundle.pem.sha256"}
            if image in ("zt-service-a", "zt-service-b"):
                services += 1
                policy = args[args.index("--policy") + 1]
                mount = next(m for m in c["volumeMounts"] if policy.startswith(m["mountPath"] + "/"))
                vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
                assert vol["configMap"]["name"] == "zt-mesh-policy" and mount.get("readOnly") is True
    assert (agents, services) == (2, 2)


def test_the_mesh_policy_configmap_is_a_version_2_policy_over_the_deployed_identities() -> None:
    cm = next(d for d in of_kind("ConfigMap") if d["metadata"]["name"] == "zt-mesh-policy")
    doc = json.loads(cm["data"]["mesh-policy.json"])
    assert doc["version"] == 2 and doc["rules"]
    deployed = {f"spiffe://{TRUST_DOMAIN}/svc/{n}" for n, _, _ in pod_templates() if n != "zt-ra"}
    for rule in doc["rules"]:
        assert set(rule) == {"caller", "callee", "methods", "paths"}, rule
        assert rule["caller"] in deployed and rule["callee"] in deployed, rule
        assert rule["methods"] and all(m == "*" or m.isupper() for m in rule["methods"]), rule
        assert rule["paths"] and all(p.startswith("/") or p == "*" for p in rule["paths"]), rule
