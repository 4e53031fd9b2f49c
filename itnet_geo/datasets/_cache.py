"""The processed-data cache: keyed folders, atomic writes, verified reads.

A cache entry is a folder ``<cache_dir>/<Dataset>/<split>-<key>`` holding

- ``data.pt``: the collated tensors (``torch.save`` of plain dicts, loaded with
  ``weights_only=True``);
- ``manifest.json``: the options the key was made from, a fingerprint of the
  source files, the class names, the skipped files, and the SHA-256 and size of
  ``data.pt``.

Both are written to a temporary file and renamed into place, data first and
manifest last, so a reader sees either a complete entry or one it rejects: a
missing or unparsable manifest, other options, changed sources, or a
``data.pt`` whose size or checksum differs (truncated, corrupted, or from an
interrupted rewrite) all mean "rebuild", never "use".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import torch

from itnet_geo._atomic import atomic_open, write_atomic

#: Bump when processing changes in a way that alters cached results.
DATA_VERSION = 1
#: The manifest format.
_MANIFEST_FORMAT = 1


def default_cache_dir() -> Path:
    r"""``$ITNET_GEO_CACHE``, else ``~/.cache/itnet_geo``."""
    env = os.environ.get("ITNET_GEO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "itnet_geo"


def cache_key(options: dict[str, Any]) -> str:
    r"""A short stable hash of JSON-serialisable :obj:`options`."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(root: Path, paths: Iterable[str | os.PathLike]) -> str:
    r"""Hash of the names, sizes and modification times of :obj:`paths`.

    Catches files added, removed, replaced or rewritten since the cache was
    built, at the cost of one ``stat`` per file (a missing file counts too).
    """
    digest = hashlib.sha256()
    prefix = len(str(root)) + 1
    for path in paths:
        name = str(path)
        rel = name[prefix:] if name.startswith(str(root)) else name
        try:
            st = os.stat(name)
            line = f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            line = f"{rel}\0missing\n"
        digest.update(line.encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def save(folder: Path, tensors: dict[str, Any], manifest: dict[str, Any]) -> None:
    r"""Store :obj:`tensors` and :obj:`manifest` (which gains the checksum)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()
    with atomic_open(folder / "data.pt", "wb", durable=True) as handle:
        torch.save(tensors, handle)
        handle.flush()
        size, sha = _file_sha256(Path(handle.name))
    manifest = dict(manifest, format=_MANIFEST_FORMAT, bytes=size, sha256=sha)
    write_atomic(manifest_path, json.dumps(manifest, indent=1), durable=True)


def load(
    folder: Path, options: dict[str, Any], source_fingerprint: str
) -> Optional[tuple[dict[str, Any], dict[str, Any]]]:
    r"""The cached ``(tensors, manifest)`` if the entry is complete and current.

    Returns :obj:`None` for anything else: no entry, another format, other
    options or sources, or a data file that fails the size or SHA-256 check.
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        return None
    expected = json.loads(json.dumps(options, sort_keys=True, default=str))
    if manifest.get("options") != expected:
        return None
    if manifest.get("fingerprint") != source_fingerprint:
        return None
    path = folder / "data.pt"
    try:
        if path.stat().st_size != manifest.get("bytes"):
            return None
        if _file_sha256(path) != (manifest.get("bytes"), manifest.get("sha256")):
            return None
        # Memory-mapped (copy-on-write): the checksum pass left it in the page
        # cache, so this costs no second copy.
        tensors = torch.load(path, weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable entry means "rebuild"
        return None
    return tensors, manifest
