"""The bootstrap token file, watched for a new token while the agent's identity is revoked.

Once its own certificate is on the CRL, the agent cannot renew (the RA refuses a proof made
with a revoked certificate) and must not try. The way back is the operator's: re-enable the
identity and write a new one-time token into the same file (`ztca register NAME --reenable
--token-file F`). The agent polls the file; a token it has not spent or tried yet means
"bootstrap again". Tokens are compared by SHA-256, so the token itself is never kept in memory
longer than one attempt nor logged. The stat(2) signature (inode, size, mtime) is looked at
first, so an unchanged file costs one stat per poll.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from zt.errors import ConfigError


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_token(path: Path) -> str:
    """The token in `path`, stripped; ConfigError when unreadable or empty."""
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read token file {path}: {e}") from e
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


class TokenWatch:
    """Tells a token not spent or tried yet apart from the ones already used."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._used: set[str] = set()
        self._last_stat: tuple[int, int, int] | None = None

    def mark_used(self, token: str) -> None:
        """`token` was spent (bootstrap) or refused: never try it again."""
        self._used.add(token_digest(token))

    def fresh_token(self) -> str | None:
        """A token to try, or None when the file is absent, empty, unchanged or already used."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._last_stat = None
            return None
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._last_stat:
            return None
        try:
            token = read_token(self.path)
        except ConfigError:
            return None  # a half-written or empty file: looked at again at the next change
        self._last_stat = signature
        return None if token_digest(token) in self._used else token

    def retry_later(self) -> None:
        """The last fresh token met a transient failure: offer it again at the next poll."""
        self._last_stat = None
