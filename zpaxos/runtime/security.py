"""CURVE keys: who may speak Paxos to a node, and with which role.

With ``[security] curve = true`` every socket uses CurveZMQ (Curve25519 keys,
authenticated encryption). Each node has a key pair; its public key is in the config,
so proposers and peers connect to the right server and nothing else. Each client
identity has a key pair too, and a node accepts a connection only from a key it knows:

* a **node key** (one of ``[node.N] public_key``): the peer may do everything, including
  telling a node that a value is chosen;
* a **client key** (a ``*.key`` file in ``authorized_clients``): the client may propose
  and ask for status. Its ``Decide`` is not taken on trust: the node checks it with its
  peers first (see AcceptorHost), so an authorized but buggy client still cannot make a
  node record a value that no quorum accepted;
* any other key, or no CURVE at all: refused during the handshake, before a single
  message reaches the node's loop; the node logs it once per connection attempt, with
  the address and the key's fingerprint, and counts it in ``zpaxos status``.

Key files are ZeroMQ certificates (``zmq.auth.create_certificates``): ``NAME.key`` holds
the public key, ``NAME.key_secret`` both keys and is private to its owner (mode 0600;
a secret readable by others is refused at load time).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec

Z85_KEY_LEN = 40  # a Curve25519 key in Z85 text
NODE_ROLE, CLIENT_ROLE = "node", "client"


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or not private (the user's fault)."""


class KeyPair(msgspec.Struct, frozen=True):
    public: bytes  # Z85, 40 bytes
    secret: bytes


def fingerprint(public: bytes) -> str:
    """A short, stable name for a public key in logs: 'sha256:3f2a9c01b7e4'."""
    import hashlib  # here: a short-lived `zpaxos propose` without CURVE never needs it

    return "sha256:" + hashlib.sha256(public).hexdigest()[:12]


def _read_cert(path: Path) -> tuple[bytes | None, bytes | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a directory, not a key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file ({e.strerror})") from None
    public = secret = None
    for line in raw.splitlines()[:64]:
        line = line.strip()
        if line.startswith(b"public-key"):
            public = line.split(b"=", 1)[-1].strip(b" \t'\"")
        elif line.startswith(b"secret-key"):
            secret = line.split(b"=", 1)[-1].strip(b" \t'\"")
    return public, secret


def _valid(key: bytes | None) -> bool:
    if key is None or len(key) != Z85_KEY_LEN:
        return False
    try:
        import zmq.utils.z85 as z85

        return len(z85.decode(key)) == 32
    except (ValueError, KeyError, TypeError):
        return False


def load_public(path: Path) -> bytes:
    public, _ = _read_cert(path)
    if not _valid(public):
        raise KeyFileError(f"{path}: not a ZeroMQ public key certificate (no valid public-key "
                        f"line; make one with zpaxos keygen)")
    assert public is not None
    return public


def load_secret(path: Path) -> KeyPair:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: secret key file not found") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read secret key file ({e.strerror})") from None
    if stat.S_ISREG(mode) and mode & 0o077:
        raise KeyFileError(f"{path}: secret key is readable by others (mode "
                        f"{stat.S_IMODE(mode):03o}); run: chmod 600 {path}")
    public, secret = _read_cert(path)
    if not _valid(public) or not _valid(secret):
        raise KeyFileError(f"{path}: not a ZeroMQ secret key certificate (needs valid public-key "
                        f"and secret-key lines; make one with zpaxos keygen)")
    assert public is not None and secret is not None
    return KeyPair(public, secret)


def load_authorized(directory: Path) -> dict[bytes, str]:
    """Public key -> client name, from every ``*.key`` in ``directory``."""
    if not directory.is_dir():
        raise KeyFileError(f"{directory}: authorized clients directory not found")
    out: dict[bytes, str] = {}
    for path in sorted(directory.glob("*.key")):
        out[load_public(path)] = path.stem
    return out


def keygen(directory: Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600, never readable by others,
    not even for a moment); an existing key is kept unless ``force``."""
    import zmq.auth

    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"{name!r}: a key name is a plain file name (like node0 or alice)")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force:
        for p in (public, secret):
            if p.exists():
                raise KeyFileError(f"{p}: already exists; keeping it (use --force to replace it)")
    old = os.umask(0o077)  # the secret file is created private
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)  # public keys are meant to be shared
    return public, secret
