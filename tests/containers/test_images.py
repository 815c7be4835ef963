"""The images: non-root, and no CA key or other secret in any layer.

The CA's keys, store and admin token are created at run time in the CA volume; tokens and
workload keys in their own volumes. So an image's filesystem must hold no private key, no
`*.key`, `admin.token` or `zt.db`, and nothing but empty directories under /var/lib/zt. The
image is read as the engine exports it (every file of the flattened layers), not through tools
inside it.
"""

from __future__ import annotations

import re
import subprocess
import tarfile

import pytest

from tests.containers.conftest import IMAGES, docker

# A real PEM private key: the armour and base64 between (not code that merely names the marker).
PEM_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{40,}-----END ")
SECRET_NAMES = (".key", "admin.token", "zt.db", "zt.db-wal", "keystore.p12", "keystore.pass")


def is_distro_library(name: str) -> bool:
    """Debian's shared libraries embed public self-test keys (libgnutls does): not ours."""
    return name.startswith(("/usr/lib/", "/lib/")) and ".so" in name.rsplit("/", 1)[-1]


def exported_findings(image: str) -> list[str]:
    cid = docker("create", image).stdout.strip()
    findings = []
    try:
        with subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE) as p:
            assert p.stdout is not None
            with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
                for m in tar:
                    name = "/" + m.name.lstrip("./")
                    if name.endswith(SECRET_NAMES):
                        findings.append(f"secret-looking file {name}")
                    if name.startswith("/var/lib/zt/") and not m.isdir():
                        findings.append(f"state in the image: {name}")
                    if m.isfile() and m.size < 4_000_000 and not is_distro_library(name):
                        f = tar.extractfile(m)
                        if f is not None and PEM_KEY.search(f.read()):
                            findings.append(f"private key in {name}")
    finally:
        docker("rm", "-f", cid, check=False)
    return findings


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_non_root(images: list[str], image: str) -> None:
    assert docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip() == "10001:10001"
    uid = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u").stdout.strip()
    assert uid == "10001"


@pytest.mark.parametrize("image", IMAGES)
def test_image_holds_no_ca_key_or_secret(images: list[str], image: str) -> None:
    assert exported_findings(image) == []


def test_service_a_image_has_every_library_it_links(images: list[str]) -> None:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "ldd", images[3], "/opt/zt/bin/service-a").stdout
    assert "not found" not in out, out
