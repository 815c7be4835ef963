"""A lab identity as scenarios hold it: a certificate directory in the agent's layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabIdentity:
    name: str
    spiffe_id: str
    cert_dir: Path

    def generation(self) -> Path:
        """The reader's contract: resolve `current` once."""
        return (self.cert_dir / "current").resolve()

    @property
    def serial(self) -> str:
        return str(json.loads((self.generation() / "svid.json").read_text())["serial"])

    @property
    def key(self) -> Path:
        return self.generation() / "key.pem"

    @property
    def chain(self) -> Path:
        return self.generation() / "chain.pem"

    @property
    def cert(self) -> Path:
        return self.generation() / "cert.pem"

    @property
    def bundle(self) -> Path:
        return self.generation() / "bundle.pem"
