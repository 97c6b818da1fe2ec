"""Model stores outside the filesystem. Redis: one hash per model.

A model lives under one Redis key as a hash with the same two parts as on
disk (:func:`skol_spark.stores.directory.model_to_parts`); a whole
PipelineModel the same way, its metadata listing every stage and its body
holding their arrays (:mod:`skol_spark.stages.pipeline_store`):

``metadata``
    the metadata JSON, recording the body's size and SHA-256;
``chunks``
    how many body chunks follow;
``chunk:0`` ... ``chunk:N-1``
    the weights body, cut so that no value nears Redis's 512 MB limit.

Writes are atomic: the hash is built under a temporary key, then renamed over
the target in one MULTI/EXEC transaction (``RENAMENX`` when overwriting is
not allowed), so a reader sees the old model or the new one, never a mix, and
a failed write leaves the previous model intact. The temporary key shares
the target's Redis Cluster hash slot and is created with its expiry in the
same transaction, so a writer that dies or loses its connection before the
rename leaves nothing that outlives ``_TEMP_KEY_TTL_SECONDS``.
Reads take the whole hash in one ``HGETALL``, and the body's size and SHA-256
are checked, so a dropped connection never yields a partial model.

Clients made from a URL retry a refused or dropped connection
``CONNECTION_RETRIES`` times, after 0.2, 0.4 and 0.8 s, for every command,
then fail with :class:`~skol_spark.errors.StoreUnavailableError`. A
``redis.Redis`` passed in keeps its own retry policy.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from skol_spark.errors import (
    CorruptModelError,
    ModelExistsError,
    ModelNotFoundError,
    StoreUnavailableError,
)
from skol_spark.nn.trained_network import TrainedNetwork
from skol_spark.stores.directory import SavedStage, model_from_parts, model_to_parts

if TYPE_CHECKING:
    import redis

__all__ = ["save_to_redis", "load_from_redis", "save_parts_to_redis", "load_parts_from_redis", "redis_client"]

REDIS_CHUNK_BYTES = 64 << 20
CONNECTION_RETRIES = 3
_BACKOFF_BASE_SECONDS, _BACKOFF_CAP_SECONDS = 0.1, 1.0
_TEMP_KEY_TTL_SECONDS = 3600
_METADATA, _CHUNKS = b"metadata", b"chunks"


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_client(client_or_url: redis.Redis | str, **kwargs: Any) -> tuple[redis.Redis, str]:
    """A client and a printable name for it, from a client or a URL.

    URLs follow redis-py: ``redis://[[user]:password@]host[:port][/db]`` and
    ``rediss://`` for TLS (``?ssl_cert_reqs=...`` and friends as query options).
    """
    import redis

    if isinstance(client_or_url, str):
        if not client_or_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "Expected a redis.Redis client or a URL starting with redis://, rediss:// or "
                f"unix://. Received: {_redact(client_or_url)!r}"
            )
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        kwargs.setdefault("socket_connect_timeout", 10)
        kwargs.setdefault("socket_timeout", 60)
        kwargs.setdefault(
            "retry",
            Retry(
                ExponentialBackoff(cap=_BACKOFF_CAP_SECONDS, base=_BACKOFF_BASE_SECONDS),
                CONNECTION_RETRIES,
                supported_errors=(redis.exceptions.ConnectionError,),
            ),
        )
        return redis.Redis.from_url(client_or_url, **kwargs), _redact(client_or_url)
    if isinstance(client_or_url, redis.Redis):
        kw = client_or_url.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        return client_or_url, f"redis at {where}"
    raise ValueError(
        f"Expected a redis.Redis client or a redis:// URL. Received: {type(client_or_url).__name__}"
    )


def save_to_redis(
    stage: SavedStage,
    network: TrainedNetwork,
    client_or_url: redis.Redis | str,
    key: str,
    ttl: float | None = None,
    overwrite: bool = True,
    chunk_bytes: int = REDIS_CHUNK_BYTES,
) -> None:
    """Store a model (its stage record and network) under ``key`` atomically; see the module doc."""
    from pyspark import __version__ as spark_version

    metadata, body = model_to_parts(stage, network, spark_version)
    save_parts_to_redis(metadata, body, client_or_url, key, ttl, overwrite, chunk_bytes)


def save_parts_to_redis(
    metadata: str | bytes,
    body: bytes,
    client_or_url: redis.Redis | str,
    key: str,
    ttl: float | None = None,
    overwrite: bool = True,
    chunk_bytes: int = REDIS_CHUNK_BYTES,
) -> None:
    """Store a metadata JSON and its body under ``key`` as one hash, atomically (the module doc's layout)."""
    import redis

    if chunk_bytes <= 0:
        raise ValueError(f"Expected chunk_bytes > 0. Received: {chunk_bytes}")
    if ttl is not None and ttl <= 0:
        raise ValueError(f"Expected ttl in seconds > 0, or None. Received: {ttl}")
    client, where = redis_client(client_or_url)
    chunks = [body[lo : lo + chunk_bytes] for lo in range(0, max(len(body), 1), chunk_bytes)]
    temp = _staging_key(key)
    try:
        staging = client.pipeline(transaction=True)  # temp is a fresh name: nothing to delete
        staging.hset(temp, mapping={_METADATA: metadata, _CHUNKS: len(chunks)})
        for i, chunk in enumerate(chunks):
            staging.hset(temp, f"chunk:{i}", chunk)
        staging.expire(temp, _TEMP_KEY_TTL_SECONDS)
        staging.execute()
        publish = client.pipeline(transaction=True)
        if overwrite:
            publish.rename(temp, key)
        else:
            publish.renamenx(temp, key)
        if ttl is not None:
            publish.pexpire(key, int(ttl * 1000))
        else:
            publish.persist(key)
        renamed = publish.execute()[0]
    except redis.exceptions.ConnectionError as exc:
        raise StoreUnavailableError(
            f"Could not save model under key {key!r}: {where} is unreachable or dropped the "
            f"connection ({exc}). The previous model under that key, if any, is unchanged."
        ) from exc
    except redis.exceptions.RedisError as exc:
        _discard(client, temp)
        raise StoreUnavailableError(
            f"Could not save model under key {key!r} in {where}: {exc}. The previous model "
            "under that key, if any, is unchanged."
        ) from exc
    if not overwrite and not renamed:
        _discard(client, temp)
        raise ModelExistsError(
            f"A value already exists under key {key!r} in {where}; pass overwrite=True to replace it."
        )


def _staging_key(key: str) -> str:
    """A fresh temporary key in the same Redis Cluster hash slot as ``key``.

    Cluster hashes only the part of a key inside braces, so ``{key}:...`` lands
    where ``key`` does (a key that already has braces keeps its own tag).
    """
    tagged = key if "{" in key else f"{{{key}}}"
    return f"{tagged}:skol_spark-writing:{uuid.uuid4().hex}"


def _discard(client: redis.Redis, temp: str) -> None:
    with contextlib.suppress(Exception):  # it expires on its own anyway
        client.delete(temp)


def load_from_redis(
    client_or_url: redis.Redis | str, key: str, class_name: str
) -> tuple[SavedStage, TrainedNetwork]:
    """The stage record and network stored under ``key``, verified as on disk."""
    metadata, body, source = load_parts_from_redis(client_or_url, key)
    return model_from_parts(metadata, body, class_name, source)


def load_parts_from_redis(client_or_url: redis.Redis | str, key: str) -> tuple[bytes, bytes, str]:
    """The metadata JSON and the whole body stored under ``key``, and a name for the key in messages.

    The chunks are checked to be all there; the body's size and checksum are
    the metadata reader's to check.
    """
    import redis

    client, where = redis_client(client_or_url)
    source = f"Redis key {key!r} in {where}"
    try:
        kind = client.type(key)
        stored = client.hgetall(key) if kind == b"hash" else None
    except redis.exceptions.ConnectionError as exc:
        raise StoreUnavailableError(
            f"Could not load model under key {key!r}: {where} is unreachable or dropped the "
            f"connection ({exc})."
        ) from exc
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailableError(f"Could not load model under key {key!r} from {where}: {exc}") from exc
    if kind == b"none" or (stored is not None and not stored):
        raise ModelNotFoundError(f"No model under key {key!r} in {where}.")
    if stored is None:
        raise CorruptModelError(
            f"{source} holds a Redis {kind.decode()}, not a skol_spark model (a hash)."
        )
    if _METADATA not in stored or _CHUNKS not in stored:
        raise CorruptModelError(f"{source} is not a skol_spark model: no metadata or chunk count.")
    try:
        count = int(stored[_CHUNKS])
    except ValueError as exc:
        raise CorruptModelError(f"{source}: the chunk count {stored[_CHUNKS]!r} is not a number.") from exc
    missing = [i for i in range(count) if f"chunk:{i}".encode() not in stored]
    if missing:
        raise CorruptModelError(
            f"{source} is truncated: {len(missing)} of {count} body chunks are missing "
            f"(first missing: chunk:{missing[0]})."
        )
    body = b"".join(stored[f"chunk:{i}".encode()] for i in range(count))
    return stored[_METADATA], body, source
