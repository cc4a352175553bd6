"""Bearer tokens: made with `secrets`, stored only as hashes, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SESSION_PREFIX = "rcs_"
API_TOKEN_PREFIX = "rcp_"
REMEMBER_PREFIX = "rcr_"
ONE_TIME_PREFIX = "rco_"


def new_token(prefix: str) -> str:
    """A fresh token with 256 bits of entropy; the prefix tells token kinds apart."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex (64 chars): what the database stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_token_short(token: str) -> str:
    """URL-safe base64 SHA-256 without padding (43 chars), for 60-char seed columns."""
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def matches(stored_hash: str, candidate_hash: str) -> bool:
    """Constant-time comparison of two token hashes."""
    return hmac.compare_digest(stored_hash.encode(), candidate_hash.encode())
