"""Webhook secrets at rest: Fernet tokens under the keys of CDR_WEBHOOK_KEYS.

A signing secret has to be read back to sign, so it cannot be hashed; it is encrypted
instead (Fernet: AES-128-CBC and HMAC-SHA256, from `cryptography`). The keys:

- `CDR_WEBHOOK_KEYS`: comma-separated Fernet keys (`Fernet.generate_key()`), newest first.
  The first encrypts; every one decrypts.
- A key derived from the admin token (HKDF-SHA256) is always last: a deployment that sets no
  key of its own still keeps secrets encrypted, under a key nobody else knows, and moving to
  keys of its own later needs no step but setting them.

Rotation (docs/delivery.md): put a new key first and keep the old ones after it; at start the
notifier re-encrypts, in small batches, every stored secret the first key did not seal (and
any still in clear from before encryption). Once that is logged done, the old keys may go.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Every Fernet token starts with its version byte 0x80, base64 "gA".
_TOKEN_PREFIX = "gA"


def derived_key(admin_token: str) -> bytes:
    """The Fernet key this deployment has without CDR_WEBHOOK_KEYS."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"cdrflow webhook secrets v1"
    ).derive(admin_token.encode())
    return base64.urlsafe_b64encode(raw)


def parse_keys(value: str) -> list[bytes]:
    """CDR_WEBHOOK_KEYS as keys; ValueError naming the one that is not a Fernet key."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    for n, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(
                f"key {n} is not a Fernet key (32 url-safe base64-encoded bytes; make one with"
                " `python -c 'from cryptography.fernet import Fernet;"
                " print(Fernet.generate_key().decode())'`)"
            ) from None
    return [k.encode() for k in keys]


def _unknown_key() -> InvalidToken:
    return InvalidToken("a webhook secret is sealed with a key not in CDR_WEBHOOK_KEYS")


class SecretBox:
    def __init__(self, keys: Sequence[bytes], *, admin_token: str) -> None:
        every = [*keys, derived_key(admin_token)]
        self._primary = Fernet(every[0])
        self._all = MultiFernet([Fernet(k) for k in every])
        self._opened: dict[str, str] = {}  # token -> secret: one decryption per token

    def seal(self, secret: str) -> str:
        return self._all.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored value holds. A value that is no token is a secret stored in
        clear before encryption came (re-encrypted at start, see `stale`)."""
        if not stored.startswith(_TOKEN_PREFIX):
            return stored
        found = self._opened.get(stored)
        if found is None:
            try:
                found = self._all.decrypt(stored.encode()).decode()
            except InvalidToken:
                raise _unknown_key() from None
            if len(self._opened) > 10_000:
                self._opened.clear()
            self._opened[stored] = found
        return found

    def stale(self, stored: str) -> bool:
        """True when `stored` is in clear or sealed by another key than the first."""
        if not stored.startswith(_TOKEN_PREFIX):
            return True
        try:
            self._primary.decrypt(stored.encode())
        except InvalidToken:
            return True
        return False

    def reseal(self, stored: str) -> str:
        """`stored` sealed with the first key (MultiFernet.rotate keeps its timestamp)."""
        if not stored.startswith(_TOKEN_PREFIX):
            return self.seal(stored)
        try:
            return self._all.rotate(stored.encode()).decode()
        except InvalidToken:
            raise _unknown_key() from None
