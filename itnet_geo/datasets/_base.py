"""What every itnet_geo dataset shares: class folders, errors, the cache.

:class:`ShapeDataset` is a PyG :class:`~torch_geometric.data.InMemoryDataset`
whose subclasses only say which files make up a split (:meth:`_discover`) and
how one file becomes :class:`~torch_geometric.data.Data` (:meth:`_process_source`).
The base reads them (with a progress bar), collects or raises errors, applies
``pre_filter`` / ``pre_transform``, and stores the result in a verified cache
(:mod:`itnet_geo.datasets._cache`) outside the — possibly read-only — root.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch
from torch_geometric.data import Data, InMemoryDataset
from tqdm.auto import tqdm

from itnet_geo.datasets import _cache
from itnet_geo.io import ReadError

SPLITS = ("train", "test")
_ON_ERROR = ("raise", "skip")
# Show a progress bar from this many files on.
_PROGRESS_FROM = 100


class ShapeSource(NamedTuple):
    """One file of a split: its path, its class index (-1: the file has labels)."""

    path: Path
    label: int


def shape_generator(seed: int, key: str) -> torch.Generator:
    r"""A generator seeded from :obj:`seed` and a per-shape :obj:`key`.

    Deterministic, independent of processing order, and different per shape.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def describe(obj: Any) -> str:
    r"""A stable text for a ``pre_transform`` / ``pre_filter`` in the cache key.

    Objects with a ``__repr__`` of their own (all PyG and itnet_geo transforms)
    use it; a module-level function uses its qualified name. Anything else (a
    lambda, a local function, an object without a repr) keeps its address, so it
    is never mistaken for another one and simply gets a fresh cache entry.
    """
    if obj is None:
        return "None"
    qualname = getattr(obj, "__qualname__", None)
    if callable(obj) and qualname is not None and hasattr(obj, "__code__"):
        if "<" not in qualname:
            return f"{obj.__module__}.{qualname}"
    return repr(obj)


def split_dirs(root: Path) -> dict[str, list[str]]:
    r"""Class folders of :obj:`root` (those with a ``train`` or ``test`` folder).

    Returns:
        dict: split name to the sorted class names that have that split.
    """
    found: dict[str, list[str]] = {split: [] for split in SPLITS}
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and e.name[0] != ".")
    for name in classes:
        for split in SPLITS:
            if (root / name / split).is_dir():
                found[split].append(name)
    return found


def scan_class_folders(
    root: Path, split: str, extensions: Sequence[str]
) -> tuple[list[str], list[ShapeSource]]:
    r"""The ``<root>/<class>/<split>/*<ext>`` layout.

    Classes are the sorted folders holding a ``train`` or ``test`` folder (so
    labels agree between splits even if a class lacks one); files are sorted by
    name, extensions matched case-insensitively.

    Raises:
        FileNotFoundError: No class folders, no such split, or no matching
            files, saying what was looked for and what was found.
    """
    per_split = split_dirs(root)
    classes = sorted(set(per_split["train"]) | set(per_split["test"]))
    pattern = f"{root}/<class>/{split}/*{{{','.join(extensions)}}}"
    if not classes:
        raise FileNotFoundError(
            f"no class folders in {root}: looked for {pattern} "
            f"(a folder per class holding 'train' and/or 'test')"
        )
    if not per_split[split]:
        others = [s for s in SPLITS if per_split[s]]
        raise FileNotFoundError(
            f"no '{split}' split in {root}: looked for {pattern}; "
            f"this root only has the {' and '.join(map(repr, others))} split"
        )
    wanted = tuple(ext.lower() for ext in extensions)
    sources: list[ShapeSource] = []
    other_ext: Counter[str] = Counter()
    for label, name in enumerate(classes):
        folder = root / name / split
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            files = sorted(e.name for e in entries if e.is_file())
        for file in files:
            ext = os.path.splitext(file)[1].lower()
            if ext in wanted:
                sources.append(ShapeSource(folder / file, label))
            else:
                other_ext[ext or "(none)"] += 1
    if not sources:
        seen = ", ".join(f"{n} {e}" for e, n in other_ext.most_common()) or "none"
        raise FileNotFoundError(
            f"no files for the '{split}' split in {root}: looked for {pattern}; "
            f"files found there: {seen}"
        )
    return classes, sources


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread while processing shapes.

    Per-shape tensors are tiny; parallel regions on a busy machine cost far more
    than they save (measured: 40 ms instead of 2 ms per sampled mesh).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _reason(err: BaseException) -> str:
    """The message of :obj:`err` without the path (the path is listed apart)."""
    if isinstance(err, ReadError):
        text = str(err)
        prefix = f"{err.path}: "
        return text[len(prefix) :] if text.startswith(prefix) else text
    return str(err) or type(err).__name__


class ShapeDataset(InMemoryDataset):
    r"""Base of the itnet_geo datasets: a split of shape files, processed once.

    Subclasses implement :meth:`_discover` (sets :attr:`classes`, returns the
    split's files) and :meth:`_process_source` (one file to one or more
    :class:`~torch_geometric.data.Data`), and extend :meth:`_options` with
    everything that changes the result.

    Processing is cached in ``<cache_dir>/<Dataset>/<split>-<key>``, ``key`` a
    hash of those options (absolute root, split, ``pre_transform`` /
    ``pre_filter`` repr, library data version, subclass options). An entry is
    reused only if complete, unmodified (SHA-256) and built from the same files
    (names, sizes, modification times); otherwise it is rebuilt.

    Args:
        root (str or os.PathLike): Folder holding the data (never written to).
        split (str): ``"train"`` or ``"test"``.
        transform (callable, optional): Applied on every access.
        pre_transform (callable, optional): Applied once before caching.
        pre_filter (callable, optional): Keeps a shape when it returns
            :obj:`True`; applied before caching.
        on_error (str): ``"raise"`` stops at the first unreadable file;
            ``"skip"`` leaves such files out, lists them with their reasons in
            one warning and in :attr:`skipped`.
        cache_dir (str or os.PathLike, optional): Cache root; default
            ``$ITNET_GEO_CACHE`` or ``~/.cache/itnet_geo``.
        force_reload (bool): Rebuild even if a valid cache entry exists.
        log (bool): Show a progress bar while processing many files.

    Attributes:
        classes (list[str]): Class names; label ``i`` is ``classes[i]``.
        names (list[str]): Per shape, its file relative to the root (with
            ``#i`` for the ``i``-th shape of a file holding several), so that a
            prediction can be traced back to its file.
        skipped (list[tuple[str, str]]): ``(path, reason)`` of left-out files.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        on_error: str = "raise",
        cache_dir: Optional[str | os.PathLike] = None,
        force_reload: bool = False,
        log: bool = True,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"dataset root {path} is not a folder")
        self.split = split
        self.on_error = on_error
        self.cache_dir = (
            Path(cache_dir).expanduser().resolve()
            if cache_dir is not None
            else _cache.default_cache_dir()
        )
        self.classes: list[str] = []
        self.names: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.cache_path: Optional[Path] = None
        super().__init__(
            str(path), transform, pre_transform, pre_filter, log, force_reload
        )
        sources, inputs = self._discover()
        self._load_or_process(sources, inputs)

    # -- subclass hooks -----------------------------------------------------------

    def _discover(self) -> tuple[list[ShapeSource], list[Path]]:
        r"""Set :attr:`classes`; return the split's files and other input files."""
        raise NotImplementedError

    def _process_source(self, source: ShapeSource) -> list[Data]:
        r"""Read one file into shapes; raise :class:`ValueError` if it is bad.

        The shapes of a file holding several may carry ``source_index`` (their
        position in the file, when some are left out): it names them
        ``file#index`` in :attr:`names` and is removed.
        """
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        r"""Everything that changes the processed result (the cache key)."""
        return {
            "dataset": type(self).__name__,
            "root": self.root,
            "split": self.split,
            "pre_transform": describe(self.pre_transform),
            "pre_filter": describe(self.pre_filter),
            "data_version": _cache.DATA_VERSION,
        }

    # -- PyG surface --------------------------------------------------------------

    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return str(self.cache_path) if self.cache_path is not None else ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- processing ---------------------------------------------------------------

    def _load_or_process(self, sources: list[ShapeSource], inputs: list[Path]) -> None:
        options = self._options()
        key = _cache.cache_key(options)
        self.cache_path = self.cache_dir / type(self).__name__ / f"{self.split}-{key}"
        root = Path(self.root)
        files = [str(s.path) for s in sources] + [str(p) for p in inputs]
        fingerprint = _cache.fingerprint(root, sorted(set(files)))
        cached = None
        if not self.force_reload:
            cached = _cache.load(self.cache_path, options, fingerprint)
        if cached is not None and cached[1]["skipped"] and self.on_error == "raise":
            cached = None  # re-read, so the first bad file raises its own error
        if cached is not None and (
            len(cached[1].get("names") or ()) != cached[1].get("num_shapes")
        ):
            cached = None  # an entry written before shapes were named
        if cached is not None:
            tensors, manifest = cached
            self._data = Data.from_dict(tensors["data"])
            self.slices = tensors["slices"]
            self.classes = list(manifest["classes"])
            self.names = list(manifest["names"])
            self.skipped = [tuple(item) for item in manifest["skipped"]]
        else:
            with _one_thread():
                data_list = self._process_all(sources)
                data, slices = self.collate(data_list)
            self._data, self.slices = data, slices
            _cache.save(
                self.cache_path,
                {"data": data.to_dict(), "slices": slices},
                {
                    "options": options,
                    "fingerprint": fingerprint,
                    "classes": self.classes,
                    "skipped": self.skipped,
                    "names": self.names,
                    "num_shapes": len(data_list),
                },
            )
        self._data_list = None
        if self.skipped:
            self._warn_skipped(len(sources))

    def _process_all(self, sources: list[ShapeSource]) -> list[Data]:
        data_list: list[Data] = []
        names: list[str] = []
        skipped: list[tuple[str, str]] = []
        progress = tqdm(
            sources,
            desc=f"{type(self).__name__} {self.split}",
            unit="file",
            disable=not self.log or len(sources) < _PROGRESS_FROM,
        )
        for source in progress:
            try:
                shapes = self._process_source(source)
                names_here = self._shape_names(source, shapes)
                named = list(zip(names_here, shapes, strict=True))
                if self.pre_filter is not None:
                    named = [(n, d) for n, d in named if self.pre_filter(d)]
                if self.pre_transform is not None:
                    named = [(n, self.pre_transform(d)) for n, d in named]
            except (ValueError, OSError) as err:
                if self.on_error == "raise":
                    if isinstance(err, ReadError):
                        raise
                    raise ReadError(source.path, _reason(err)) from err
                skipped.append((str(source.path), _reason(err)))
                continue
            names.extend(n for n, _ in named)
            data_list.extend(d for _, d in named)
        progress.close()
        self.skipped = skipped
        self.names = names
        self._drop_partial_keys(data_list)
        if not data_list:
            detail = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
            raise ValueError(
                f"{type(self).__name__}: no shape left in the '{self.split}' split "
                f"of {self.root} ({len(sources)} files, {len(skipped)} skipped"
                + (f": {detail}" if detail else ", all removed by pre_filter")
                + ")"
            )
        return data_list

    def _shape_names(self, source: ShapeSource, shapes: list[Data]) -> list[str]:
        """The :attr:`names` of the shapes read from :obj:`source`."""
        name = Path(os.path.relpath(source.path, self.root)).as_posix()
        out = []
        for k, shape in enumerate(shapes):
            index = k
            if "source_index" in shape:
                index = int(shape.source_index)
                del shape.source_index
            out.append(f"{name}#{index}" if len(shapes) > 1 or index != k else name)
        return out

    @staticmethod
    def _drop_partial_keys(data_list: list[Data]) -> None:
        """Collation needs the same attributes everywhere: drop partial ones."""
        counts = Counter(key for data in data_list for key in data.keys())
        partial = sorted(k for k, n in counts.items() if n < len(data_list))
        if not partial:
            return
        for data in data_list:
            for key in partial:
                if key in data:
                    del data[key]
        detail = ", ".join(f"'{k}' ({counts[k]} of {len(data_list)})" for k in partial)
        warnings.warn(
            f"attributes only some shapes have were dropped from all: {detail}",
            UserWarning,
            stacklevel=5,
        )

    def _warn_skipped(self, total: int) -> None:
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.skipped)
        warnings.warn(
            f"{type(self).__name__}: skipped {len(self.skipped)} of {total} files "
            f"of the '{self.split}' split that could not be read:\n{lines}",
            UserWarning,
            stacklevel=4,
        )


def shape_dataset_options(args: dict[str, Any]) -> dict[str, Any]:
    r"""The options of :class:`ShapeDataset` besides ``root`` and ``split``.

    Picked by name from :obj:`args`, the ``locals()`` of a subclass's
    ``__init__`` that spells out the same keyword parameters, which forwards them
    as ``super().__init__(root, split, **shape_dataset_options(locals()))``.
    """
    params = inspect.signature(ShapeDataset.__init__).parameters
    return {
        name: args[name] for name in params if name not in ("self", "root", "split")
    }
