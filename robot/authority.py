"""Who may release an e-stop: operator releases signed with the operator's Ed25519 key.

Engaging the e-stop is always allowed, from anyone on the bus: it only makes things
safer. Releasing it lets the arm move again, so the nodes that latch an e-stop (the
controller, the bridge) honour an ``EStop(engage=False)`` only when its ``reason`` carries
the operator's signature (``operator-release <stamp_ns> <signature hex>``) over that
stamp, made with the operator's secret key, and verified against the operator's public
key given to the node (``operator_key``: a file path). A release whose stamp is not newer
than the last accepted one (a replay), or, in realtime, older than ``max_age_s``, is
refused too. Without an ``operator_key`` every release is refused: the e-stop then holds
until the graph is restarted. Every refusal is counted.

The secret key never reaches the graph: nodes get the public key only, so a node of the
graph (or anything else that can publish on the bus) cannot forge a release. Keep the
secret key where graph nodes cannot read it (another user, another host); see
docs/safety.md. Make a key pair with ``reflexarc operator-key dir=DIR`` and release with
``reflexarc estop-release`` (:func:`release_verb`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reflexarc.runtime.errors import ReflexarcError
from reflexarc.runtime.msgs import EStop

PREFIX = "operator-release"
_DOMAIN = b"reflexarc/estop-release/v1/"
SECRET_NAME = "operator.key_secret"
PUBLIC_NAME = "operator.key"


class AuthorityError(ReflexarcError):
    """An operator key cannot be made, read or used."""


def make_operator_key(keys_dir: str | Path) -> Path:
    """Write a fresh key pair to ``keys_dir``: ``operator.key`` (public, hex) and
    ``operator.key_secret`` (secret, hex, readable by its owner only). Returns the
    public key's path. Refuses to overwrite an existing secret key."""
    d = Path(keys_dir)
    d.mkdir(parents=True, exist_ok=True)
    secret_path = d / SECRET_NAME
    if secret_path.exists():
        raise AuthorityError(f"{secret_path} exists; remove it first to make a new operator key")
    key = Ed25519PrivateKey.generate()
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.private_bytes_raw().hex() + "\n")
    public = d / PUBLIC_NAME
    public.write_text(key.public_key().public_bytes_raw().hex() + "\n")
    return public


def _read_hex(path: str | Path, what: str) -> bytes:
    try:
        raw = bytes.fromhex(Path(path).read_text().strip())
    except OSError as e:
        raise AuthorityError(f"cannot read the operator's {what} key {path}: {e}") from None
    except ValueError:
        raise AuthorityError(f"{path}: the operator's {what} key must be 64 hex digits") from None
    if len(raw) != 32:
        raise AuthorityError(f"{path}: the operator's {what} key must be 32 bytes, got {len(raw)}")
    return raw


class Operator:
    """Holds the operator's secret key; signs releases."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    @classmethod
    def load(cls, secret_path: str | Path) -> Operator:
        path = Path(secret_path)
        if path.is_dir():
            path = path / SECRET_NAME
        if path.exists() and path.stat().st_mode & 0o077:
            raise AuthorityError(f"{path} is readable by other users; chmod 600 it")
        return cls(Ed25519PrivateKey.from_private_bytes(_read_hex(path, "secret")))

    @classmethod
    def generate(cls) -> Operator:
        """A throwaway operator (tests, benches)."""
        return cls(Ed25519PrivateKey.generate())

    def public_hex(self) -> str:
        return self.key.public_key().public_bytes_raw().hex()

    def release(self, stamp_ns: int | None = None) -> EStop:
        """A signed ``EStop(engage=False)`` stamped ``stamp_ns`` (default: now, monotonic)."""
        stamp = time.monotonic_ns() if stamp_ns is None else int(stamp_ns)
        sig = self.key.sign(_DOMAIN + str(stamp).encode())
        return EStop(stamp_ns=stamp, engage=False, reason=f"{PREFIX} {stamp} {sig.hex()}")


class ReleaseCheck:
    """Decides whether an ``EStop(engage=False)`` comes from the operator (module docstring).

    Args:
        operator_key: path of the operator's public key file, or its 64 hex digits; "":
            no operator, every release refused.
        max_age_s: realtime: a release signed longer ago than this is refused.
        realtime: whether stamps are wall-clock monotonic (freshness is then checked).
    """

    def __init__(self, operator_key: str = "", max_age_s: float = 5.0, realtime: bool = True) -> None:
        self.key: Ed25519PublicKey | None = None
        if operator_key:
            raw = (bytes.fromhex(operator_key) if _is_hex_key(operator_key)
                   else _read_hex(operator_key, "public"))
            self.key = Ed25519PublicKey.from_public_bytes(raw)
        self.max_age_ns = int(max_age_s * 1e9)
        self.realtime = realtime
        self.last_stamp = -1
        self.refused = 0

    def __call__(self, e: EStop, now_ns: int) -> str:
        """"" if ``e`` is an authorised release, else why not (and counted)."""
        why = self._why(e, now_ns)
        if why:
            self.refused += 1
        return why

    def _why(self, e: EStop, now_ns: int) -> str:
        if self.key is None:
            return "no operator key configured: e-stop releases are refused"
        parts = e.reason.split()
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isdigit():
            return "unsigned release (not from the operator)"
        stamp = int(parts[1])
        try:
            self.key.verify(bytes.fromhex(parts[2]), _DOMAIN + parts[1].encode())
        except (InvalidSignature, ValueError):
            return "bad signature"
        if stamp <= self.last_stamp:
            return "replayed release"
        if self.realtime and abs(now_ns - stamp) > self.max_age_ns:
            return "stale release"
        self.last_stamp = stamp
        return ""


def _is_hex_key(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s)


# --------------------------------------------------------------------------------------
# Request sockets that only the operator reaches
# --------------------------------------------------------------------------------------


def private_dir() -> Path:
    """``$TMPDIR/reflexarc-<uid>``: where this user's request sockets live (made 0700)."""
    return Path(tempfile.gettempdir()) / f"reflexarc-{os.getuid()}"


def private_ipc(address: str) -> None:
    """Before binding ``address``: an ipc socket's directory is made (0700) and must
    belong to this user; the default directory is tightened to 0700 if it is loose.
    Bind, then :func:`seal_ipc` the socket file."""
    if not address.startswith("ipc://"):
        return
    d = Path(address[len("ipc://"):]).parent
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid():
        raise AuthorityError(f"the socket's directory {d} belongs to another user")
    if st.st_mode & 0o077 and d == private_dir():
        d.chmod(0o700)


def seal_ipc(address: str) -> None:
    """After binding: only this user may connect to an ipc socket (file mode 0600)."""
    if address.startswith("ipc://"):
        os.chmod(address[len("ipc://"):], 0o600)


def request_security(zctx: Any, keys_dir: str) -> Any:
    """CURVE set-up for a request socket (keys from ``reflexarc keys``); none without keys."""
    from reflexarc.runtime.bus import BusConfig, Security

    if not keys_dir:
        return Security(zctx, BusConfig())
    return Security(zctx, BusConfig(transport="tcp", curve=True, keys_dir=keys_dir))
