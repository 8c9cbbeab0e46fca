"""Content codings for the big bodies we send many times (the seat map): which coding a
request accepts, and each body compressed once per coding, on the first request for it."""

from __future__ import annotations

import zlib

import brotli

IDENTITY = "identity"
# ours, best first: on equal q-values the smaller body wins
CODINGS = ("br", "gzip")
# Fast levels: a busy show's map changes many times a second and each version is compressed
# again. On a 6,000-seat map (771 KB): gzip level 1 gives 54 KB in ~1.3 ms (level 6: 39 KB
# in ~6 ms), brotli quality 4 gives 36 KB in ~2.6 ms (quality 9: 28 KB in ~18 ms).
GZIP_LEVEL = 1
BROTLI_QUALITY = 4
_GZIP_WINDOW = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 8.4.1.3: x-gzip is gzip


def negotiate(accept_encoding: str | None) -> str:
    """The coding to send for this Accept-Encoding: the acceptable one of ours with the
    highest q-value (ties: ours in CODINGS order), else identity. No header, a malformed
    one, or none of ours acceptable: identity (which we send even when the client refused
    it, rather than 406: every client can read JSON)."""
    if not accept_encoding:
        return IDENTITY
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *params = item.split(";")
        coding = name.strip().lower()
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
                if not 0.0 <= weight <= 1.0:  # also NaN
                    weight = 0.0
        if coding:
            weights[_ALIASES.get(coding, coding)] = weight
    wildcard = weights.get("*", 0.0)
    best, best_weight = IDENTITY, 0.0
    for coding in CODINGS:
        weight = weights.get(coding, wildcard)
        if weight > best_weight:
            best, best_weight = coding, weight
    # identity competes only when named: unnamed, it is the fallback, not a q=1 rival
    if weights.get(IDENTITY, 0.0) > best_weight:
        return IDENTITY
    return best


def compress(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WINDOW)
        return compressor.compress(body) + compressor.flush()
    if coding == "br":
        compressed: bytes = brotli.compress(body, mode=brotli.MODE_TEXT, quality=BROTLI_QUALITY)
        return compressed
    raise ValueError(f"unknown content coding {coding!r}")


class Body:
    """A body kept to be sent many times: its bytes, and each coding of them, made once on
    the first request that accepts it."""

    __slots__ = ("_coded", "identity")

    def __init__(self, identity: bytes) -> None:
        self.identity = identity
        self._coded: dict[str, bytes] = {}

    def coded(self, coding: str) -> bytes:
        if coding == IDENTITY:
            return self.identity
        found = self._coded.get(coding)
        if found is None:
            found = self._coded[coding] = compress(self.identity, coding)
        return found
