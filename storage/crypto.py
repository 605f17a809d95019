"""Sealing secrets (providers' keys) before they reach the database.

A sealed value is a short ASCII token, ``v1.<key id>.<data>``, so it fits a
text column and says which key opened it without revealing the key. Each
token is bound to the record it belongs to (the ``aad``, e.g.
``connections/3f2a.../credentials``): copying a ciphertext into another row
or field makes it fail to open instead of silently handing over the wrong
secret.

Keys come from ``XAI_USAGE_ENCRYPTION_KEY`` (comma-separated; the first one
encrypts, all of them decrypt, which is how rotation works) or, for a
single-machine install, from a key file generated beside the database.

Neither key bytes nor plaintext ever appear in an exception, a repr or a log
line: error messages name keys by their id only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "XAI_USAGE_ENCRYPTION_KEY"
KEY_FILE_NAME = "encryption.key"

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = "v1"

KEY_FORMAT_HINT = (
    f"base64 of {KEY_BYTES} random bytes, e.g. "
    "`python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'`"
)

_KEY_ID = re.compile(r"[0-9a-f]{12}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class EncryptionKeyError(Exception):
    """The configured key(s) are unusable; the message says what to fix."""


class DecryptionError(Exception):
    """A token that cannot be opened: malformed, tampered, moved, or from an unknown key.

    ``key_id`` is the key id found in the token, or None if there was none to
    find. The message never includes the token (a "token" that fails to parse
    may be a plaintext secret stored by mistake) nor any key material.
    """

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


def key_id(key: bytes) -> str:
    """Identify a key without revealing it: safe to show, store and log.

    The fixed prefix keeps the id from being a plain hash of the key that
    could be matched against hashes computed elsewhere.
    """
    return hashlib.sha256(b"xai-usage key id" + key).hexdigest()[:12]


class Keyring:
    """One or more AES-256-GCM keys: the first seals, every one can open.

    Rotation is ``Keyring([new, old])``: old tokens still open, new ones use
    the new key, and ``key_id_of`` finds the tokens still to be re-sealed.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if isinstance(keys, bytes | bytearray | str):
            # A lone key is itself a Sequence (of ints): say so plainly rather
            # than report that "key 1 is not bytes".
            raise TypeError("Keyring takes a list of keys, e.g. Keyring([key])")
        # Imported here, not with the module: a report only needs the keys' ids.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        ciphers: dict[str, AESGCM] = {}
        for position, key in enumerate(keys, 1):
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
                size = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else "not bytes"
                raise EncryptionKeyError(
                    f"Encryption key {position} is {size}; AES-256 needs exactly {KEY_BYTES} "
                    f"random bytes. In {ENV_VAR}, give each key as {KEY_FORMAT_HINT}."
                )
            # setdefault: the same key listed twice is harmless, keep its first place.
            ciphers.setdefault(key_id(bytes(key)), AESGCM(bytes(key)))
        if not ciphers:
            raise EncryptionKeyError(
                f"No encryption key given. Set {ENV_VAR} to {KEY_FORMAT_HINT}."
            )
        # Only the AESGCM objects are kept, not the raw key bytes.
        self._ciphers = ciphers
        self.key_ids: tuple[str, ...] = tuple(ciphers)
        self.primary_key_id: str = self.key_ids[0]

    @classmethod
    def from_env_value(cls, value: str) -> Keyring:
        """Parse ``XAI_USAGE_ENCRYPTION_KEY``: comma-separated base64 keys, first one seals."""
        return cls(_parse_keys(value, where=ENV_VAR))

    @classmethod
    def generate_key(cls) -> bytes:
        """A fresh random 256-bit key."""
        return os.urandom(KEY_BYTES)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"

    def seal(self, plaintext: bytes, aad: str) -> str:
        """Encrypt ``plaintext`` with the primary key, bound to the record named by ``aad``.

        A fresh random nonce per call: GCM with a repeated nonce under one key
        leaks plaintext and lets tags be forged, and 96 random bits make a
        repeat negligible at any volume this app will see.
        """
        kid = self.primary_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, bytes(plaintext), _associated_data(kid, aad))
        data = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{VERSION}.{kid}.{data}"

    def open(self, token: str, aad: str) -> bytes:
        """Decrypt a token from :meth:`seal`; ``aad`` must name the same record."""
        kid = self.key_id_of(token)
        raw = _decode_data(token) if kid is not None else None
        if kid is None or raw is None:
            raise DecryptionError(
                f"Not an encrypted value this version of xai-usage can read "
                f"(expected {VERSION}.<key id>.<data>).",
                key_id=kid,
            )
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"This value was encrypted with the key with id {kid}, which is not configured "
                f"(configured key ids: {', '.join(self.key_ids)}). Set {ENV_VAR} to include it, "
                f'e.g. "<current key>,<key {kid}>": keys are comma-separated and the first '
                "one encrypts.",
                key_id=kid,
            )
        from cryptography.exceptions import InvalidTag

        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, sealed, _associated_data(kid, aad))
        except InvalidTag:
            raise DecryptionError(
                f"The encrypted value for {aad!r} does not open with key {kid}: it was "
                "tampered with or copied from another record.",
                key_id=kid,
            ) from None

    @staticmethod
    def key_id_of(token: str) -> str | None:
        """The key id a token was sealed with, without decrypting (None if not a token)."""
        if not isinstance(token, str):
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION or not _KEY_ID.fullmatch(parts[1]):
            return None
        return parts[1]

    def seal_json(self, value: Mapping[str, Any], aad: str) -> str:
        """Seal a mapping (e.g. a credentials form) as compact, key-sorted JSON."""
        text = json.dumps(dict(value), separators=(",", ":"), sort_keys=True)
        return self.seal(text.encode("utf-8"), aad)

    def open_json(self, token: str, aad: str) -> dict[str, Any]:
        """Open a token from :meth:`seal_json`."""
        plaintext = self.open(token, aad)
        try:
            value = json.loads(plaintext)
        except ValueError:
            value = None  # the JSON error would quote the plaintext; say nothing of it
        if not isinstance(value, dict):
            raise DecryptionError(
                f"The encrypted value for {aad!r} opened but does not hold a JSON object.",
                key_id=self.key_id_of(token),
            )
        return value


def _associated_data(kid: str, aad: str) -> bytes:
    """What the GCM tag authenticates besides the ciphertext.

    The version and key id are included so that editing either in a token
    fails too, not only moving it to another record. Neither contains a dot,
    so the encoding is unambiguous whatever ``aad`` holds.
    """
    if not aad:
        raise ValueError("aad must name the record the secret belongs to")
    return f"{VERSION}.{kid}.{aad}".encode()


def _decode_data(token: str) -> bytes | None:
    """The nonce‖ciphertext‖tag bytes of a token, or None if not canonical base64.

    Requiring the canonical encoding means any change to the token's text,
    even to padding bits base64 would otherwise ignore, is a failure.
    """
    data = token.rsplit(".", 1)[-1]
    if not _URLSAFE_B64.fullmatch(data):
        return None
    try:
        raw = base64.urlsafe_b64decode(data)
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).decode("ascii") != data:
        return None
    return raw if len(raw) >= NONCE_BYTES + TAG_BYTES else None


def _parse_keys(value: str, *, where: str) -> list[bytes]:
    """Decode comma-separated base64 keys; errors name ``where`` and the key's position."""
    keys: list[bytes] = []
    for part in value.split(","):
        text = "".join(part.split())  # tolerate spaces and newlines anywhere
        if not text:
            continue  # "a, b," and stray commas are fine
        position = len(keys) + 1
        # Accept the URL-safe alphabet and missing padding too: both are
        # common when keys are generated by other tools.
        text = text.translate(str.maketrans("-_", "+/"))
        text += "=" * (-len(text) % 4)
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            # Never quote the value: it is (meant to be) a secret.
            raise EncryptionKeyError(
                f"{where}: key {position} is not valid base64. Each key must be "
                f"{KEY_FORMAT_HINT}; separate several keys with commas, the one that "
                "encrypts first."
            ) from None
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(
                f"{where}: key {position} decodes to {len(key)} bytes, but each key must be "
                f"exactly {KEY_BYTES}: {KEY_FORMAT_HINT}."
            )
        keys.append(key)
    if not keys:
        raise EncryptionKeyError(f"{where} holds no key. It must be {KEY_FORMAT_HINT}.")
    return keys


@dataclass(frozen=True)
class KeySource:
    """The keyring in use, where it came from, and what to tell the operator about that."""

    keyring: Keyring
    origin: str
    """``"env"`` or ``"file:<path>"``."""
    warning: str | None = None


def load_keyring(environ: Mapping[str, str], data_dir: Path) -> KeySource:
    """The keyring from ``XAI_USAGE_ENCRYPTION_KEY``, else from (a new) key file in ``data_dir``.

    The file keeps a single-machine install working with no setup; the
    returned warning explains its limits and how to move to a managed key.
    """
    value = environ.get(ENV_VAR, "")
    if value:
        return KeySource(Keyring.from_env_value(value), "env", None)

    path = Path(data_dir) / KEY_FILE_NAME
    text = _read_key_file(path)
    if text is None:
        _create_key_file(path)
        text = _read_key_file(path)
        if text is None:
            raise EncryptionKeyError(
                f"The key file {path} disappeared right after it was created. Check what is "
                f"deleting files in {path.parent}, or set {ENV_VAR} to {KEY_FORMAT_HINT}."
            )
    if not text.strip():
        raise EncryptionKeyError(
            f"The key file {path} is empty. Restore it from a backup; delete it only if "
            "nothing has been encrypted yet, since values sealed with the lost key cannot "
            "be recovered."
        )
    keyring = Keyring(_parse_keys(text, where=f"The key file {path}"))
    return KeySource(keyring, f"file:{path}", _key_file_warning(path))


def configured_key_ids(environ: Mapping[str, str], data_dir: Path) -> tuple[str, ...] | None:
    """The ids of the keys :func:`load_keyring` would load, from the same text.

    For a store opened only to read (a terminal report): enough to check the
    keys match the database, without building ciphers. None when loading the
    keyring would do more than read: create the key file, warn that it is
    too open, or fail (then the normal way says why).
    """
    value = environ.get(ENV_VAR, "")
    path = Path(data_dir) / KEY_FILE_NAME
    try:
        if value:
            keys = _parse_keys(value, where=ENV_VAR)
        elif (text := _read_key_file(path)) is None or _loose_mode(path) is not None:
            return None
        else:
            keys = _parse_keys(text, where=f"The key file {path}")
    except EncryptionKeyError:
        return None
    return tuple(dict.fromkeys(key_id(key) for key in keys))


def _read_key_file(path: Path) -> str | None:
    """The key file's text, or None if there is none yet."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not base64 text"
        raise EncryptionKeyError(
            f"Cannot read the key file {path} ({reason}). Make it readable by this user, "
            f"or set {ENV_VAR} to the key instead ({KEY_FORMAT_HINT})."
        ) from None


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path``, readable by this user only.

    The key goes to a private temporary file (O_CREAT|O_EXCL, mode 0600) that
    is then hard-linked into place. The link either appears complete or fails
    because the file exists, so a concurrent process never reads a half-written
    key, a crash never leaves an empty one, and whoever loses the race simply
    uses the winner's key.
    """
    encoded = base64.b64encode(Keyring.generate_key()).decode("ascii")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(encoded + "\n")
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                return  # another process created it first: use theirs
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise EncryptionKeyError(
            f"Cannot create the key file {path} ({exc.strerror}). Make {path.parent} "
            f"writable by this user, or set {ENV_VAR} to {KEY_FORMAT_HINT}."
        ) from None


def _fsync_dir(directory: Path) -> None:
    """Make the new directory entry durable: losing the key loses every secret sealed with it."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_file_warning(path: Path) -> str:
    warning = (
        f"The encryption key is kept in {path}, beside the database. That is fine for one "
        "machine, but anyone who can read both can decrypt the stored credentials. To move "
        f'to a managed key, set {ENV_VAR} to "<new key>,<contents of {path}>" (new key: '
        f"{KEY_FORMAT_HINT}), run `xai-usage rotate-key`, then drop the old key from "
        f"{ENV_VAR} and delete {path}."
    )
    mode = _loose_mode(path)
    if mode is not None:
        warning += (
            f" Also, {path} has permissions {mode:04o}, so other users may be able to read "
            f"it: run `chmod 600 {path}`."
        )
    return warning


def _loose_mode(path: Path) -> int | None:
    """The file's permission bits if group or others have any access, else None."""
    if os.name != "posix":
        return None  # POSIX mode bits mean little on Windows
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None
