"""deploy/kubernetes/: every manifest validates offline against the Kubernetes schemas, and the
manifests agree with each other and with the real command lines.

The schemas are the ones the `kubernetes-validate` package ships (no cluster, no network), in
strict mode (an unknown or misspelt field is an error, as `kubectl apply --validate=strict`
would say), for one pinned Kubernetes version. The schemas cannot see what spans documents,
so the rest is checked here: every ConfigMap and Secret a pod uses exists (with the keys it
uses), every mount names a volume, Services select pods and name their ports, NetworkPolicies
select pods, every pod runs hardened, and the containers' arguments are accepted by the real
programs: the Python CLIs' own parsers, the native services' `--help`.

Two variants are checked, each as the set of documents an operator applies: the single RA
(`deploy/kubernetes/*.yaml`, SQLite on a volume) and RA replicas on PostgreSQL (the same files
with `deploy/kubernetes/postgres/`'s replacing those of the same name, and its new ones).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from psycopg import conninfo

from zt import options
from zt.errors import ZtError
from zt.ra.main import settings_from
from zt.ra.store_open import is_postgres

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The variant for RA replicas on PostgreSQL: files that replace the base's of the same name, and
# files the base does not have (docs/kubernetes.md, "Several RA replicas on PostgreSQL").
POSTGRES = MANIFESTS / "postgres"
# Native sidecars (init containers with restartPolicy: Always) are GA from 1.33.
KUBERNETES_VERSION = "1.33"
NAMESPACE = "zt"
TRUST_DOMAIN = "zt.lab"

Doc = dict[str, Any]
Docs = list[tuple[str, Doc]]


def load_file(f: Path) -> Docs:
    name = str(f.relative_to(MANIFESTS))
    return [(name, d) for d in yaml.safe_load_all(f.read_text()) if d is not None]


def load_variant(*overlays: Path) -> Docs:
    """What an operator applies: the base's files, each replaced by an overlay's file of the
    same name, and the overlay's other files, in file-name order (the order of `kubectl apply`)."""
    files = {f.name: f for f in MANIFESTS.glob("*.yaml")}
    for overlay in overlays:
        files.update({f.name: f for f in overlay.glob("*.yaml")})
    return [doc for name in sorted(files) for doc in load_file(files[name])]


VARIANTS = {"sqlite": load_variant(), "postgres": load_variant(POSTGRES)}
# Every file once, the base's and the variant's, for the schema check.
FILES = [doc for f in sorted([*MANIFESTS.glob("*.yaml"), *POSTGRES.glob("*.yaml")]) for doc in load_file(f)]


@pytest.fixture(params=list(VARIANTS))
def docs(request: pytest.FixtureRequest) -> Docs:
    """The documents of one variant; every cross-document test below runs on each."""
    return VARIANTS[request.param]


def ident(d: Doc) -> str:
    return f"{d['kind']}/{d['metadata']['name']}"


def of_kind(docs: Docs, kind: str) -> list[Doc]:
    return [d for _, d in docs if d["kind"] == kind]


def pod_templates(docs: Docs) -> Iterator[tuple[str, Doc, Doc]]:
    """(workload name, pod template metadata, pod spec) for every workload."""
    for _, d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            t = d["spec"]["template"]
            yield d["metadata"]["name"], t.get("metadata", {}), t["spec"]


def all_containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def test_the_manifests_exist(docs: Docs) -> None:
    kinds = {d["kind"] for _, d in docs}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"} <= kinds, kinds
    assert {name for name, _, _ in pod_templates(docs)} == {"zt-ra", "service-a", "service-b"}


def test_each_object_is_defined_once_in_a_variant(docs: Docs) -> None:
    """A variant's file replaces the base's file of the same name whole: an object it moved to
    another file would otherwise be applied twice, the later one silently winning."""
    seen: dict[str, str] = {}
    for f, d in docs:
        assert ident(d) not in seen, f"{ident(d)} in both {seen[ident(d)]} and {f}"
        seen[ident(d)] = f


@pytest.mark.parametrize("doc", [d for _, d in FILES], ids=[f"{f}:{ident(d)}" for f, d in FILES])
def test_manifest_validates_strictly_against_the_pinned_kubernetes_schema(doc: Doc) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{ident(doc)}: {e.message} at {'.'.join(str(p) for p in e.path)}")


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The check above can fail: the same Deployment with one field misspelt does not validate."""
    deployment = json.loads(json.dumps(next(d for d in of_kind(VARIANTS["sqlite"], "Deployment"))))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_namespaced_object_is_in_the_zt_namespace(docs: Docs) -> None:
    for _, d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, ident(d)
    assert [d["metadata"]["name"] for d in of_kind(docs, "Namespace")] == [NAMESPACE]


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


def test_every_configmap_and_secret_a_pod_uses_exists_with_its_keys(docs: Docs) -> None:
    defined = {(d["kind"], d["metadata"]["name"]): keys_of(d) for _, d in docs if d["kind"] in ("ConfigMap", "Secret")}
    seen = 0
    for name, _, spec in pod_templates(docs):
        for kind, ref, keys in references(spec):
            seen += 1
            assert (kind, ref) in defined, f"{name} uses {kind} {ref}, which no manifest defines"
            missing = set(keys) - defined[(kind, ref)]
            has = sorted(defined[(kind, ref)])
            assert not missing, f"{name} uses keys {sorted(missing)} of {kind} {ref}, which has {has}"
    assert seen >= 10


def test_every_mount_names_a_volume_of_its_pod_and_every_volume_is_used(docs: Docs) -> None:
    for name, _, spec in pod_templates(docs):
        volumes = {v["name"] for v in spec.get("volumes", [])}
        used = set()
        for c in all_containers(spec):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{name}/{c['name']} mounts {m['name']}, not a volume of the pod"
                used.add(m["name"])
        assert used == volumes, f"{name}: volumes nobody mounts: {sorted(volumes - used)}"


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_a_pod_and_target_a_named_port_it_has(docs: Docs) -> None:
    for svc in of_kind(docs, "Service"):
        sname = svc["metadata"]["name"]
        pods = [
            spec for _, meta, spec in pod_templates(docs) if matches(svc["spec"]["selector"], meta.get("labels", {}))
        ]
        assert pods, f"Service {sname} selects no pod"
        for port in svc["spec"]["ports"]:
            names = {p.get("name") for spec in pods for c in all_containers(spec) for p in c.get("ports", [])}
            assert port["targetPort"] in names, f"Service {sname}: no container port {port['targetPort']}"


def test_network_policies_deny_by_default_and_select_real_pods(docs: Docs) -> None:
    policies = of_kind(docs, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    labels = [meta.get("labels", {}) for _, meta, _ in pod_templates(docs)]
    for p in policies:
        sel = p["spec"]["podSelector"].get("matchLabels", {})
        assert any(matches(sel, lab) for lab in labels), f"NetworkPolicy {p['metadata']['name']} selects no pod"
        for rule in [*p["spec"].get("ingress", []), *p["spec"].get("egress", [])]:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    sel = peer["podSelector"].get("matchLabels", {})
                    where = p["metadata"]["name"]
                    assert any(matches(sel, lab) for lab in labels), f"{where}: peer {sel} selects no pod"


def test_the_mesh_mirrors_compose_networks(docs: Docs) -> None:
    """Only workloads reach the RA pod (pki); the services reach each other on the mTLS ports (mesh)."""
    by_name = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}
    ra_in = by_name["pki-ingress"]["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"] for r in ra_in for peer in r["from"]] == [{"zt.lab/role": "workload"}]
    assert sorted(p["port"] for r in ra_in for p in r["ports"]) == [8443, 8444]
    for svc, peer, port in (("service-a", "service-b", 8080), ("service-b", "service-a", 8081)):
        ingress = by_name[f"mesh-{svc}"]["spec"]["ingress"]
        assert [x["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in ingress for x in r["from"]] == [peer]
        assert [p["port"] for r in ingress for p in r["ports"]] == [port]


def test_every_pod_and_container_runs_hardened(docs: Docs) -> None:
    for name, _, spec in pod_templates(docs):
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


def test_the_ca_key_is_only_in_the_ra_container_and_read_only(docs: Docs) -> None:
    for name, _, spec in pod_templates(docs):
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
    """Kubernetes' $(VAR) expansion in args, with the container's env."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def container_env(c: Doc, docs: Docs) -> dict[str, str]:
    """The container's environment as the kubelet builds it: its values, and the ConfigMap and
    Secret keys it refers to, as the variant defines them (placeholders included). A reference
    to a key no document defines is left out (the test of the references names it)."""
    data = {
        (d["kind"], d["metadata"]["name"]): {**d.get("data", {}), **d.get("stringData", {})}
        for _, d in docs
        if d["kind"] in ("ConfigMap", "Secret")
    }
    env = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {})
        kind, key_ref = (
            ("ConfigMap", ref["configMapKeyRef"]) if "configMapKeyRef" in ref else ("Secret", ref.get("secretKeyRef"))
        )
        value = e.get("value") if key_ref is None else data.get((kind, key_ref["name"]), {}).get(key_ref["key"])
        if value is not None:
            env[e["name"]] = value
    return env


def python_program(image: str) -> tuple[Any, str] | None:
    """The program's own parser and the prefix of the environment variables it reads."""
    if image.startswith("zt-agent:"):
        from zt.agent.main import build_parser as agent

        return agent(), "ZT_AGENT"
    if image.startswith("zt-ra:"):
        from zt.ra.main import build_parser as ra

        return ra(), "ZT_RA"
    if image.startswith("zt-crl:"):
        from zt.crl.main import build_parser as crl

        return crl(), "ZT_CRL"
    return None


def parse_as_the_program(c: Doc, docs: Docs, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The container's args and environment through the program's own layered parser (flag >
    environment, zt.options), exactly as the program parses them at start; fails the test with
    the program's complaint if it would refuse them."""
    program = python_program(c["image"])
    assert program is not None, c["image"]
    parser, prefix = program
    env = container_env(c, docs)
    for var in [v for v in os.environ if v.startswith("ZT_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    args = [expand(a, env) for a in c.get("args", [])]
    try:
        return options.parse(parser, args, prefix)
    except SystemExit as e:
        pytest.fail(f"{c['image'].split(':')[0]} refuses {args} with {sorted(env)} set (exit {e.code})")
    except ZtError as e:
        pytest.fail(f"{c['image'].split(':')[0]} refuses its environment {sorted(env)}: {e}")


def native_flags(binary: str) -> set[str]:
    path = ROOT / "build" / binary
    assert path.exists(), f"{path} is missing: build it (./native/cpp/build.sh, ./native/java/build.sh)"
    r = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60)
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", r.stdout + r.stderr))
    assert "--cert-dir" in flags, r.stdout + r.stderr
    return flags


def program_containers() -> list[tuple[str, Doc, Docs]]:
    """(id, container, its variant's documents) for every container that runs one of our
    programs by its entrypoint; a container the variants share is checked once."""
    seen = set()
    found = []
    for variant, docs in VARIANTS.items():  # the single RA first: a shared container is named for it
        for name, _, spec in pod_templates(docs):
            for c in all_containers(spec):
                key = json.dumps([c, container_env(c, docs)], sort_keys=True)
                if "command" not in c and key not in seen:
                    seen.add(key)
                    found.append((f"{variant}:{name}/{c['name']}", c, docs))
    return found


PROGRAM_CONTAINERS = program_containers()


@pytest.mark.parametrize("c, docs", [x[1:] for x in PROGRAM_CONTAINERS], ids=[x[0] for x in PROGRAM_CONTAINERS])
def test_container_args_are_flags_the_real_program_accepts(c: Doc, docs: Docs, monkeypatch: pytest.MonkeyPatch) -> None:
    if python_program(c["image"]) is not None:
        args = parse_as_the_program(c, docs, monkeypatch)
        if c["image"].startswith("zt-ra:"):
            settings_from(args)  # what zt-ra checks next (--leaf-ttl at most its maximum, ...)
        return
    binary = {"zt-service-a": "service-a", "zt-service-b": "service-b"}[c["image"].split(":")[0]]
    given = {a.split("=", 1)[0] for a in c.get("args", []) if a.startswith("--")}
    unknown = given - native_flags(binary)
    assert not unknown, f"{c['name']}: {binary} has no {sorted(unknown)}"


def ra_agent_urls(docs: Docs) -> list[str]:
    return [
        a.split("=", 1)[1]
        for _, _, spec in pod_templates(docs)
        for c in all_containers(spec)
        if c["image"].startswith("zt-agent:")
        for a in c.get("args", [])
        if a.startswith("--ra=")
    ]


def test_agents_reach_every_ra_pod_through_the_ra_service_under_its_certificate_name(
    docs: Docs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each agent's --ra is a Service that selects the RA pods (all of them, with replicas),
    on that Service's port, under a name in the RA's own TLS certificate (--server-name)."""
    ra = next(spec for name, _, spec in pod_templates(docs) if name == "zt-ra")
    ra_labels = next(meta["labels"] for name, meta, _ in pod_templates(docs) if name == "zt-ra")
    ra_container = next(c for c in ra["containers"] if c["name"] == "ra")
    server_names = parse_as_the_program(ra_container, docs, monkeypatch).server_name
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    urls = ra_agent_urls(docs)
    assert len(urls) == 2, urls
    for url in urls:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        svc_name = str(host).removesuffix(f".{NAMESPACE}.svc.cluster.local")
        assert svc_name in services, f"--ra={url}: no Service {svc_name} in {NAMESPACE}"
        svc = services[svc_name]
        assert matches(svc["spec"]["selector"], ra_labels), f"Service {svc_name} does not select the RA pods"
        assert port in [p["port"] for p in svc["spec"]["ports"]], f"--ra={url}: Service {svc_name} has no port {port}"
        assert host in server_names, f"--ra={url}: the RA's certificate names {server_names}"


def ra_egress(docs: Docs) -> list[Doc]:
    """Every egress rule of every NetworkPolicy that selects the RA pods."""
    ra_labels = next(meta["labels"] for name, meta, _ in pod_templates(docs) if name == "zt-ra")
    return [
        rule
        for p in of_kind(docs, "NetworkPolicy")
        if matches(p["spec"]["podSelector"].get("matchLabels", {}), ra_labels)
        for rule in p["spec"].get("egress", [])
    ]


def test_the_single_ra_reaches_nothing_but_dns() -> None:
    ports = sorted(p["port"] for rule in ra_egress(VARIANTS["sqlite"]) for p in rule["ports"])
    assert ports == [53, 53], ports


def test_agents_pin_the_bundle_and_the_services_enforce_the_policy(docs: Docs) -> None:
    """CONTRACT B and P in the manifests: every agent has --bundle-sha256 from the pin
    ConfigMap; every service runs with --policy on the mounted mesh policy."""
    agents = services = 0
    for name, _, spec in pod_templates(docs):
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


def test_the_mesh_policy_configmap_is_a_version_2_policy_over_the_deployed_identities(docs: Docs) -> None:
    cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "zt-mesh-policy")
    doc = json.loads(cm["data"]["mesh-policy.json"])
    assert doc["version"] == 2 and doc["rules"]
    deployed = {f"spiffe://{TRUST_DOMAIN}/svc/{n}" for n, _, _ in pod_templates(docs) if n != "zt-ra"}
    for rule in doc["rules"]:
        assert set(rule) == {"caller", "callee", "methods", "paths"}, rule
        assert rule["caller"] in deployed and rule["callee"] in deployed, rule
        assert rule["methods"] and all(m == "*" or m.isupper() for m in rule["methods"]), rule
        assert rule["paths"] and all(p.startswith("/") or p == "*" for p in rule["paths"]), rule


# --- the PostgreSQL variant: RA replicas on a shared store (docs/scaling.md) -----------------

PG = VARIANTS["postgres"]


def ra_deployment(docs: Docs) -> Doc:
    return next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "zt-ra")


def pg_ra_container() -> Doc:
    return next(c for c in ra_deployment(PG)["spec"]["template"]["spec"]["containers"] if c["name"] == "ra")


def pg_store_url() -> str:
    """The URL zt-ra gets as its --store, from the Secret (its placeholder)."""
    env = container_env(pg_ra_container(), PG)
    assert "ZT_RA_STORE" in env, f"the ra container has no ZT_RA_STORE (zt-ra's --store), only {sorted(env)}"
    return env["ZT_RA_STORE"]


def test_the_postgres_variant_runs_ra_replicas_without_a_store_volume() -> None:
    ra = ra_deployment(PG)
    spec = ra["spec"]["template"]["spec"]
    assert ra["spec"]["replicas"] > 1
    assert ra["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not of_kind(PG, "PersistentVolumeClaim")
    assert not [v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    # Nothing seeds a store file: the store is the database (the seed Secret is left unused).
    assert not spec.get("initContainers")
    assert "zt-ca-store-seed" not in [name for _, name, _ in references(spec)]


def test_the_postgres_variant_publishes_each_replicas_crl_from_an_emptydir_the_ra_keeps_current() -> None:
    """The publisher beside each replica reads the CRL directory the `ra` container writes
    (CA_DIR/crl, synced from the store at every tick): one emptyDir, read-only for the publisher."""
    spec = ra_deployment(PG)["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    ra_args = containers["ra"]["args"]
    ca_dir = next(a.split("=", 1)[1] for a in ra_args if a.startswith("--ca-dir="))
    crl_dir = next(a.split("=", 1)[1] for a in containers["crl-publisher"]["args"] if a.startswith("--crl-dir="))
    ra_mount = next(m for m in containers["ra"]["volumeMounts"] if m["mountPath"] == f"{ca_dir}/crl")
    pub_mount = next(m for m in containers["crl-publisher"]["volumeMounts"] if m["mountPath"] == crl_dir)
    assert ra_mount["name"] == pub_mount["name"] and pub_mount.get("readOnly") is True
    assert not ra_mount.get("readOnly") and not ra_mount.get("subPath")
    volume = next(v for v in spec["volumes"] if v["name"] == ra_mount["name"])
    assert "emptyDir" in volume, volume
    crl_service = next(s for s in of_kind(PG, "Service") if s["metadata"]["name"] == "zt-crl")
    assert matches(crl_service["spec"]["selector"], ra_deployment(PG)["spec"]["template"]["metadata"]["labels"])


def test_the_postgres_variant_keeps_the_store_url_off_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """zt-ra's --store comes from the Secret as ZT_RA_STORE (the URL may hold the password);
    zt-ra's own parser takes it from there, libpq parses it, and ztca in the same container
    (`kubectl exec ... ztca register`) gets the same store as ZT_STORE."""
    ra = pg_ra_container()
    assert not [a for a in ra["args"] if a.startswith("--store")], ra["args"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in ra["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs["ZT_RA_STORE"] == refs["ZT_STORE"] == {"name": "zt-ra-store", "key": "url"}
    url = pg_store_url()
    settings = settings_from(parse_as_the_program(ra, PG, monkeypatch))
    assert settings.store == url and is_postgres(settings.store)
    assert conninfo.conninfo_to_dict(url)["dbname"]


def test_the_postgres_variant_mounts_the_database_server_ca_its_url_names() -> None:
    ra = pg_ra_container()
    parts = conninfo.conninfo_to_dict(pg_store_url())
    assert parts.get("sslmode") == "verify-full", "the database's certificate and name must be verified"
    directory, _, file = str(parts["sslrootcert"]).rpartition("/")
    mount = next(m for m in ra["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in ra_deployment(PG)["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert mount.get("readOnly") is True
    assert [i["path"] for i in volume["secret"]["items"]] == [file]


def test_the_postgres_variant_keeps_one_ra_pod_through_disruptions() -> None:
    (pdb,) = of_kind(PG, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 < ra_deployment(PG)["spec"]["replicas"]
    selected = [
        name for name, meta, _ in pod_templates(PG) if matches(pdb["spec"]["selector"]["matchLabels"], meta["labels"])
    ]
    assert selected == ["zt-ra"]


def test_the_postgres_variant_lets_the_ra_pods_and_only_them_reach_the_database() -> None:
    """One policy more than the single RA's, the egress to the database's address on the URL's
    port; the base policies are the same objects."""
    port = int(conninfo.conninfo_to_dict(pg_store_url()).get("port") or 5432)
    store_rules = [rule for rule in ra_egress(PG) if port in [p["port"] for p in rule["ports"]]]
    assert store_rules, f"no egress from the RA pods to the database's port {port}"
    for rule in store_rules:
        assert [p["protocol"] for p in rule["ports"]] == ["TCP"]
        assert rule["to"] and all("ipBlock" in peer or "namespaceSelector" in peer for peer in rule["to"]), rule
        wide = [peer for peer in rule["to"] if peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0")]
        assert not wide, f"the database egress is open to every address: {wide}"
    others = [rule for rule in ra_egress(PG) if rule not in store_rules]
    assert sorted(p["port"] for rule in others for p in rule["ports"]) == [53, 53]
    base = {p["metadata"]["name"]: p for p in of_kind(VARIANTS["sqlite"], "NetworkPolicy")}
    variant = {p["metadata"]["name"]: p for p in of_kind(PG, "NetworkPolicy")}
    assert {k: v for k, v in variant.items() if k in base} == base
    (added,) = set(variant) - set(base)
    workloads = [meta["labels"] for name, meta, _ in pod_templates(PG) if name != "zt-ra"]
    assert not any(matches(variant[added]["spec"]["podSelector"]["matchLabels"], lab) for lab in workloads)
