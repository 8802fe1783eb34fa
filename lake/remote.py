"""The object-store tier: compacted days on S3-compatible storage, under a lake URL.

Layout under the URL (``s3://bucket/prefix``, or ``file:///path`` for a shared filesystem)::

    history/ticker=<folder value>/date=<YYYY-MM-DD>/part.parquet   one object per day file
    history/ticker=!empty/date=1970-01-01/part.parquet             the zero-row placeholder

Each object is a local day file (``lake.history``) copied byte for byte, so every reader of
a day file reads it the same way. The endpoint and the credentials come the standard way
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
or the other sources of the AWS chain); pyarrow (``pyarrow.fs``) writes and lists, DuckDB
reads through ``s3fs`` (the ``s3`` extra; DuckDB's own httpfs cannot be installed offline).

Invariants:
- objects are written once: a day is uploaded only after it is compacted and its minute
  files are gone (``lake.offload``), never replaced, and removed only by the bucket's own
  lifecycle rules; an ``s3`` PUT makes an object appear whole, so a listing shows a day
  either complete or not at all;
- a (ticker, date) listed under the URL is served from the object store by every reader,
  else from the local tiers (``lake.layout``); ``lake.offload`` removes a local day file
  only a grace period after its upload was verified, so a reader that listed the object
  store before the upload still finds the local file (exactly once, as between the two
  local tiers);
- the data directory that offloads to a URL names it in ``state/lake_url.json`` (written at
  the first upload, never changed): its readers find the object store without being told,
  and a command given another URL for it is refused. A machine without the data directory
  reads the URL alone (``RemoteLake.parse``).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lake.atomic import atomic_write_bytes
from lake.datadir import HISTORY_DIR, LAKE_URL_FILE
from lake.errors import LakeError, first_line
from lake.schema import empty_lake_table

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "SCHEMES",
    "RemoteDay",
    "RemoteError",
    "RemoteLake",
    "bind_remote",
    "remote_of",
]

SCHEMES: Final = ("s3", "file")
PART_NAME: Final = "part.parquet"  # lake.layout.PART_NAME (layout imports this module)
PLACEHOLDER_FOLDER: Final = "ticker=!empty/date=1970-01-01"
_CHUNK: Final = 1 << 22
_DAY_KEY: Final = re.compile(r"/ticker=([^/]+)/date=(\d{4}-\d{2}-\d{2})/part\.parquet$")


@dataclass(frozen=True)
class RemoteDay:
    """One day's object: where it is and its identity (objects are written once, so the key
    and the size identify its bytes)."""

    remote: RemoteLake
    key: str
    size: int

    @property
    def identity(self) -> tuple[int, int, int]:
        """Shaped like ``lake.recent.FileKey``; never equal to a local file's (inode -1)."""
        return -1, zlib.crc32(self.key.encode()), self.size

    def open(self) -> pa.NativeFile:
        """The object, fetched whole (``RemoteLake.read_day_bytes``)."""
        return pa.BufferReader(self.remote.read_day_bytes(self.key))

    def __str__(self) -> str:
        return self.remote.url_of(self.key)


class RemoteError(LakeError):
    """The object store refused or lacks something; the message says what, in one line."""


@dataclass(frozen=True)
class RemoteLake:
    """One lake URL: where its objects live and how each reader reaches them."""

    url: str
    """Normalised: scheme, bucket and prefix, no trailing slash."""

    @classmethod
    def parse(cls, url: str) -> RemoteLake:
        """The lake at ``url``; RemoteError (one line) for a URL this tier cannot use."""
        text = url.strip().rstrip("/")
        parts = urlsplit(text)
        if parts.scheme not in SCHEMES:
            raise RemoteError(
                f"lake URL {url!r} not supported: use s3://bucket/prefix or file:///path"
            )
        if parts.scheme == "s3" and not parts.netloc:
            raise RemoteError(f"lake URL {url!r} names no bucket: use s3://bucket/prefix")
        if parts.scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
            raise RemoteError(f"lake URL {url!r}: a file URL is file:///absolute/path")
        if parts.query or parts.fragment or re.search(r"[*?\[\]{}'\\]", text):
            raise RemoteError(f"lake URL {url!r} holds characters a lake URL cannot have")
        return cls(text)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def base(self) -> str:
        """The lake's root as ``pyarrow.fs`` names it (``bucket/prefix`` or ``/path``)."""
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            return unquote(parts.path)
        return f"{parts.netloc}{parts.path}".rstrip("/")

    @property
    def sql_root(self) -> str:
        """The lake's root as DuckDB reads it (an ``s3://`` URL or a local path)."""
        return self.base if self.scheme == "file" else self.url

    @property
    def filesystem(self) -> pafs.FileSystem:
        return _filesystem(self.scheme)

    def day_key(self, folder_value: str, date: dt.date) -> str:
        """The object of (ticker folder value, date), as ``pyarrow.fs`` names it."""
        day = f"ticker={folder_value}/date={date.isoformat()}"
        return f"{self.base}/{HISTORY_DIR}/{day}/{PART_NAME}"

    def placeholder_key(self) -> str:
        return f"{self.base}/{HISTORY_DIR}/{PLACEHOLDER_FOLDER}/{PART_NAME}"

    def has_placeholder(self) -> bool:
        """Whether any day was ever offloaded here (one request)."""
        return self._size(self.placeholder_key()) is not None

    def ensure_placeholder(self) -> None:
        if not self.has_placeholder():
            sink = pa.BufferOutputStream()
            pq.write_table(empty_lake_table(), sink)
            self._put(self.placeholder_key(), sink.getvalue().to_pybytes())

    def days(self, folder_value: str | None = None) -> Iterator[tuple[str, dt.date, RemoteDay]]:
        """(folder value, date, object) of every day object, or only one ticker's (one
        listing of its prefix); the placeholder and foreign objects are skipped."""
        top = f"{self.base}/{HISTORY_DIR}"
        if folder_value is not None:
            top = f"{top}/ticker={folder_value}"
        selector = pafs.FileSelector(top, allow_not_found=True, recursive=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise RemoteError(f"cannot list {self.url}: {first_line(exc)}") from exc
        for info in sorted(infos, key=lambda i: i.path):
            match = _DAY_KEY.search(info.path)
            if info.type != pafs.FileType.File or match is None or match[1] == "!empty":
                continue
            try:
                day = dt.date.fromisoformat(match[2])
            except ValueError:
                continue
            yield match[1], day, RemoteDay(self, info.path, info.size or 0)

    def find_day(self, folder_value: str, date: dt.date) -> RemoteDay | None:
        """A day's object (one request); None when the object store has no such day."""
        key = self.day_key(folder_value, date)
        size = self._size(key)
        return None if size is None else RemoteDay(self, key, size)

    def read_day_bytes(self, key: str) -> pa.Buffer:
        """A day object, whole, in memory (one GET: a day file is read whole or by row
        groups, and a request per row group would cost more than the bytes)."""
        try:
            with self.filesystem.open_input_file(key) as source:
                return source.read_buffer()
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise RemoteError(f"cannot read {self.url_of(key)}: {first_line(exc)}") from exc

    def upload(self, local: Path, folder_value: str, date: dt.date) -> None:
        """Copy a local day file to its object."""
        key = self.day_key(folder_value, date)
        try:
            with open(local, "rb") as src, self.filesystem.open_output_stream(key) as sink:
                while chunk := src.read(_CHUNK):
                    sink.write(chunk)
        except (OSError, pa.ArrowException) as exc:
            if isinstance(exc, FileNotFoundError) and not Path(local).exists():
                raise
            raise RemoteError(f"cannot upload to {self.url_of(key)}: {first_line(exc)}") from exc

    def digest(self, folder_value: str, date: dt.date) -> str | None:
        """SHA-256 (hex) of a day's object as the store gives it back; None when missing."""
        key = self.day_key(folder_value, date)
        digest = hashlib.sha256()
        try:
            with self.filesystem.open_input_stream(key) as source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            raise RemoteError(f"cannot read {self.url_of(key)}: {first_line(exc)}") from exc
        return digest.hexdigest()

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read this lake's objects (for ``s3``: through ``s3fs``)."""
        if self.scheme != "s3":
            return
        try:
            import s3fs
        except ImportError:
            raise RemoteError(
                f"reading {self.url} needs the s3 extra: pip install 'ticklake[s3]'"
            ) from None
        if "s3" not in con.list_filesystems():
            # no listing cache: a connection that lives on must see days uploaded later
            s3 = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
            con.register_filesystem(s3)

    def _size(self, key: str) -> int | None:
        try:
            info = self.filesystem.get_file_info(key)
        except (OSError, pa.ArrowException) as exc:
            raise RemoteError(f"cannot reach {self.url_of(key)}: {first_line(exc)}") from exc
        return info.size if info.type == pafs.FileType.File else None

    def _put(self, key: str, data: bytes) -> None:
        try:
            with self.filesystem.open_output_stream(key) as sink:
                sink.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise RemoteError(f"cannot write {self.url_of(key)}: {first_line(exc)}") from exc

    def url_of(self, key: str) -> str:
        """The URL of an object named by its key."""
        return f"{self.url}{key.removeprefix(self.base)}"


def _filesystem(scheme: str) -> pafs.FileSystem:
    """The filesystem of a scheme, configured from the environment as it is now."""
    if scheme == "file":
        return pafs.LocalFileSystem()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _s3(endpoint, region)


@functools.cache
def _s3(endpoint: str | None, region: str | None) -> pafs.FileSystem:
    """One S3 filesystem per (endpoint, region) and process; credentials come from the
    AWS chain (environment, profile, instance role)."""
    options: dict[str, Any] = {}
    if endpoint:
        parts = urlsplit(endpoint)
        options["endpoint_override"] = parts.netloc or endpoint
        options["scheme"] = parts.scheme or "https"
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def remote_of(data: Path | str) -> RemoteLake | None:
    """The object store a data directory offloads to (``state/lake_url.json``), if any.
    RemoteError (naming the file) when the file is damaged."""
    path = Path(data, LAKE_URL_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return RemoteLake.parse(json.loads(text)["lake_url"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(f"{path} is damaged ({first_line(exc)}): restore it") from exc


def bind_remote(data: Path | str, url: str, *, create: bool = True) -> RemoteLake:
    """The object store of ``data``: ``url``, named in ``state/lake_url.json`` from now on,
    so every reader of ``data`` reads it too. ``create``: write its placeholder when it has
    none (a writer's first offload); otherwise such a URL is refused (nothing to read).
    RemoteError when the data directory is bound to another URL, or the store cannot be
    reached."""
    remote = RemoteLake.parse(url)
    bound = remote_of(data)
    if bound is not None and bound.url != remote.url:
        raise RemoteError(
            f"{Path(data)} is bound to the lake URL {bound.url}, not {remote.url}: a data "
            "directory has one (its days may already be there)"
        )
    if bound is None:
        # first: a bound data directory's readers rely on the placeholder
        if create:
            remote.ensure_placeholder()
        elif not remote.has_placeholder():
            raise RemoteError(f"{remote.url} holds no ticklake lake yet (no day offloaded)")
        Path(data, LAKE_URL_FILE).parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"lake_url": remote.url}, indent=2) + "\n"
        atomic_write_bytes(Path(data, LAKE_URL_FILE), body.encode())
    return remote
