"""Registry of real datasets: download with a checksum, cache, parse into `Interactions`.

Downloads happen on the user's machine (Colab or laptop), never in the tests. The cache folder is
``$COLDREC_DATA`` if set, else ``data/`` at the top of a source checkout, else
``~/.cache/coldrec``. ``load_dataset(name, path=...)`` reads files that are already on disk
(the CLI's ``--data-path``; for a notebook, ``$COLDREC_PATH_ML_100K`` and the like); a failed
download is one `DownloadError` naming the URL and these two ways to supply the files, and
leaves no empty folder or partial file behind.

Readers take the files as published (``../shared/papers/datasets.md``):

* ``ml-100k``: ``u.data`` plus ``u.item`` / ``u.user`` (official, ``|``-separated, Latin-1; the
  video-release field is empty on every line, item 267 has no date or URL), or the simplified
  tab-separated ``ml-100k.item`` / ``ml-100k.user`` with a typed header;
* ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, Latin-1);
* ``ml-20m``: ``ratings.csv``, ``movies.csv`` (comma-separated with a header, UTF-8);
* ``metatl-format``: your own cold-start data in MetaTL's layout, ``load_dataset("metatl-format",
  path=DIR)``: the folder holds one pair ``<name>_train.csv`` (warm users) and
  ``<name>_test_new_user.csv`` (new users), ``user \t item \t unix_ts`` without a header; the
  data is named ``<name>`` (several pairs in one folder: ``read_metatl_format(DIR, name=...)``);
  the files number their users independently, so a raw user id is ``(file part, user id)``.
  ``electronics`` is that layout with ``<name> = electronics``.

Item titles and genres go to ``Interactions.item_features`` (a ``title`` string and a ``genres``
tuple), user attributes to ``user_features`` (as in the file: ML-1M's age and occupation are
codes). A file saved with a UTF-8 byte-order mark is read as UTF-8; a gzip or zip file is an error
that says to unpack it. Electronics has no published checksum: its sha256 is recorded in
``<file>.sha256`` only after the files parsed, and checked on every later load.
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import ChecksumError, DataError, DownloadError
from .interactions import Interactions

ML_GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]
USER_COLUMNS = ["user", "age", "gender", "occupation", "zip"]


@dataclass(frozen=True)
class RemoteFile:
    url: str
    name: str  # file name in the cache folder
    md5: str | None = None
    sha256: str | None = None  # None: recorded after the first successful parse, checked after


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[RemoteFile, ...]  # empty: nothing to download, the user supplies ``path``
    reader: Callable[[Path], Interactions]  # folder with the unpacked files -> Interactions
    description: str


def cache_dir() -> Path:
    if os.environ.get("COLDREC_DATA"):
        return Path(os.environ["COLDREC_DATA"]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists() and (checkout / "coldrec_lib").is_dir():
        return checkout / "data"
    return Path.home() / ".cache" / "coldrec"


# ---------------------------------------------------------------------- parsers
COMPRESSED = {b"\x1f\x8b": "gzip-compressed: decompress it first (gunzip FILE)",
              b"PK\x03\x04": "a zip archive: unzip it and pass the folder it contains"}
UTF8_BOM = b"\xef\xbb\xbf"


def read_table(path: Path, sep: str, columns: list[str], header: bool = False,
               numeric: tuple[str, ...] = (), optional: tuple[str, ...] = (),
               encoding: str = "latin-1") -> pd.DataFrame:
    """Read a delimited file and check its shape; errors name the file, the line and the field.

    Columns in ``numeric`` are parsed as numbers in the fast path (ML-20M has 20M rows); when a
    value is not a number the file is re-read as text to report where. Columns in ``optional``
    may be empty (``""``); every other field must have a value. Quotes are only special in
    comma-separated files. A UTF-8 byte-order mark switches the encoding to UTF-8.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "the file to exist" + _look_nearby(path))
    if path.stat().st_size == 0:
        raise DataError(path, None, "a non-empty file")
    with open(path, "rb") as f:
        start = f.read(4)
    for magic, what in COMPRESSED.items():
        if start.startswith(magic):
            raise DataError(path, None, f"a plain-text table; this file is {what}")
    if start.startswith(UTF8_BOM):
        encoding = "utf-8-sig"
    options = dict(sep=sep, header=0 if header else None, engine="python" if len(sep) > 1 else "c",
                   encoding=encoding, keep_default_na=False, na_values=[""],
                   quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE)
    positions = {columns.index(c): "float64" for c in numeric}
    try:
        try:
            df = pd.read_csv(path, dtype={**{i: str for i in range(len(columns))}, **positions},
                             **options)
        except ValueError:  # a non-number in a numeric column: find it in the text
            df = pd.read_csv(path, dtype=str, **options)
    except pd.errors.EmptyDataError:
        raise DataError(path, None, "a non-empty file") from None
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"text in {encoding} ({e})") from None
    except pd.errors.ParserError as e:
        raise DataError(path, None, f"{len(columns)} {sep!r}-separated columns per row ({e})") from None
    if df.shape[1] != len(columns):
        raise DataError(path, None, f"{len(columns)} {sep!r}-separated columns "
                        f"({', '.join(columns)}); found {df.shape[1]}")
    df.columns = columns
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(path, col, f"a number; line {row + 1 + header} has {df[col].iloc[row]!r}")
        df[col] = values
    for col in optional:
        df[col] = df[col].fillna("")
    missing = df.isna().to_numpy()
    if missing.any():
        row, col = np.argwhere(missing)[0]
        raise DataError(path, columns[col], f"a value in every row; line {row + 1 + header} "
                        "has none (short of fields, empty or NaN)")
    if len(df) == 0:
        raise DataError(path, None, "at least one data row")
    return df


def _ids_are_integers(df: pd.DataFrame, path: Path, columns=("user", "item"),
                      header: bool = False) -> pd.DataFrame:
    for col in columns:
        values = df[col]
        bad = values != values.round()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(path, col, f"an integer id; line {row + 1 + header} has {values.iloc[row]!r}")
        df[col] = values.astype(np.int64)
    return df


def _look_nearby(path: Path) -> str:
    """Where a missing file is instead: a folder one level down (the archive's top folder)."""
    folder = path.parent
    if not folder.is_dir():
        return f" (the folder {folder} does not exist)"
    nested = sorted(folder.glob(f"*/{path.name}"))
    if nested:
        return f"; it is in {nested[0].parent}: pass that folder (--data-path {nested[0].parent})"
    return f"; the folder has {sorted(p.name for p in folder.iterdir())[:8] or 'nothing'}"


RATING_COLUMNS = ["user", "item", "rating", "timestamp"]


def _ratings(path: Path, sep: str, header: bool = False) -> pd.DataFrame:
    table = read_table(path, sep, RATING_COLUMNS, header, numeric=tuple(RATING_COLUMNS))
    return _ids_are_integers(table, path, header=header)


def _item_table(items: pd.DataFrame, genres: list[tuple]) -> pd.DataFrame:
    """Item side information indexed by raw item id: title and a tuple of genres."""
    return pd.DataFrame({"title": items["title"].to_numpy(), "genres": genres},
                        index=items["item"].astype(np.int64).to_numpy())


def _user_table(path: Path, sep: str, columns: list[str], header: bool = False) -> pd.DataFrame:
    """User side information indexed by raw user id (e.g. age, gender, occupation, zip)."""
    users = read_table(path, sep, columns, header, numeric=("user", "age"))
    users = _ids_are_integers(users, path, columns=("user", "age"), header=header)
    return users.set_index("user")


def read_movielens_100k(folder: Path) -> Interactions:
    """`u.data` plus `u.item` / `u.user` (official layout) or `ml-100k.item` / `ml-100k.user`
    (tab-separated layout with a typed header), whichever the folder has."""
    folder = Path(folder)
    df, genres, users = _ratings(folder / "u.data", "\t"), None, None
    if (folder / "u.item").exists():
        items = read_table(folder / "u.item", "|", ["item", "title", "release", "video_release",
                                                    "url"] + ML_GENRES_100K,
                           optional=("release", "video_release", "url"))
        flags = items[ML_GENRES_100K].to_numpy() == "1"
        genres = _item_table(items, [tuple(np.array(ML_GENRES_100K)[f]) for f in flags])
    elif (folder / "ml-100k.item").exists():
        items = read_table(folder / "ml-100k.item", "\t", ["item", "title", "year", "genres"],
                           header=True, optional=("year",))
        genres = _item_table(items, [tuple(g.split()) for g in items["genres"]])
    if (folder / "u.user").exists():
        users = _user_table(folder / "u.user", "|", USER_COLUMNS)
    elif (folder / "ml-100k.user").exists():
        users = _user_table(folder / "ml-100k.user", "\t", USER_COLUMNS, header=True)
    return Interactions.from_frame(df, name="ml-100k", item_features=genres, user_features=users,
                                   source=folder / "u.data")


def _read_movielens(folder: Path, ratings: str, movies: str, users: str | None, sep: str,
                    header: bool, name: str, encoding: str) -> Interactions:
    """ML-1M (`::`-separated .dat) and ML-20M (.csv with a header): ratings, genres, users."""
    folder = Path(folder)
    df, genres, user_table = _ratings(folder / ratings, sep, header), None, None
    if (folder / movies).exists():
        items = read_table(folder / movies, sep, ["item", "title", "genres"], header,
                           encoding=encoding)
        genres = _item_table(items, [() if g == "(no genres listed)" else tuple(g.split("|"))
                                     for g in items["genres"]])
    if users is not None and (folder / users).exists():
        user_table = _user_table(folder / users, sep, ["user", "gender", "age", "occupation",
                                                       "zip"])
    return Interactions.from_frame(df, name=name, item_features=genres, user_features=user_table,
                                   source=folder / ratings)


def read_movielens_1m(folder: Path) -> Interactions:
    return _read_movielens(folder, "ratings.dat", "movies.dat", "users.dat", "::", False, "ml-1m",
                           "latin-1")


def read_movielens_20m(folder: Path) -> Interactions:
    return _read_movielens(folder, "ratings.csv", "movies.csv", None, ",", True, "ml-20m", "utf-8")


METATL_PARTS = ("train", "test_new_user")


def metatl_names(folder: Path) -> list[str]:
    """The ``<name>`` of every ``<name>_train.csv`` / ``<name>_test_new_user.csv`` pair."""
    suffix = f"_{METATL_PARTS[0]}.csv"
    return sorted(p.name[:-len(suffix)] for p in Path(folder).glob(f"*{suffix}")
                  if (p.parent / f"{p.name[:-len(suffix)]}_{METATL_PARTS[1]}.csv").exists())


def read_metatl_format(folder: Path, name: str | None = None) -> Interactions:
    """Cold-start data in MetaTL's layout (`<name>_train.csv`, `<name>_test_new_user.csv`), named
    ``name`` (default: the one pair in ``folder``). Column ``part`` says which file a row came
    from (`cold_start_by_part` splits on it). The two files number their users independently,
    so a raw user id is the pair ``(file part, user id)``, e.g. ``("test_new_user", 17)``: every
    consumer (sequences, leave-one-out, MELO's tasks) sees each file's users apart."""
    folder = Path(folder)
    if name is None:
        names = metatl_names(folder)
        if len(names) != 1:
            found = ", ".join(names) or ", ".join(sorted(p.name for p in folder.glob("*"))[:10])
            raise DataError(folder, None, "exactly one pair <name>_train.csv + "
                            f"<name>_test_new_user.csv (MetaTL's layout); found {found or 'nothing'}"
                            + (" (pick one: read_metatl_format(folder, name=...))"
                               if len(names) > 1 else ""))
        name = names[0]
    parts = []
    for part in METATL_PARTS:
        path = folder / f"{name}_{part}.csv"
        columns = ["user", "item", "timestamp"]
        df = _ids_are_integers(read_table(path, "\t", columns, numeric=tuple(columns)), path)
        df["part"] = part
        df["user"] = list(zip(df["part"], df["user"]))
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    return Interactions.from_frame(df, rating=None, name=name, source=folder)


def read_electronics(folder: Path) -> Interactions:
    """MetaTL's Amazon Electronics files; column ``part`` says which file a row came from."""
    return read_metatl_format(folder, "electronics")


_ML = "https://files.grouplens.org/datasets/movielens/"
_ELEC = "https://raw.githubusercontent.com/sparsh-ai/coldstart-recsys/master/data/electronics/"
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec("ml-100k", (RemoteFile(_ML + "ml-100k.zip", "ml-100k.zip",
                                       md5="0e33842e24a9c977be4e0107933c0723",
                                       sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),),
                read_movielens_100k, "MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings"),
    DatasetSpec("ml-1m", (RemoteFile(_ML + "ml-1m.zip", "ml-1m.zip",
                                     md5="c4d9eecfca2ab87c1945afe126590906",
                                     sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),),
                read_movielens_1m, "MovieLens 1M: 6,040 users, 3,706 movies, 1,000,209 ratings"),
    DatasetSpec("ml-20m", (RemoteFile(_ML + "ml-20m.zip", "ml-20m.zip",
                                      md5="cd245b17a1ae2cc31bb14903e1204af3"),),
                read_movielens_20m, "MovieLens 20M: 138,493 users, 26,744 movies, 20,000,263 ratings"),
    DatasetSpec("electronics", (RemoteFile(_ELEC + "electronics_train.csv", "electronics_train.csv"),
                                RemoteFile(_ELEC + "electronics_test_new_user.csv",
                                           "electronics_test_new_user.csv")),
                read_electronics, "Amazon Electronics as prepared by MetaTL's authors"),
    DatasetSpec("metatl-format", (), read_metatl_format,
                "your own cold-start data in MetaTL's layout: <name>_train.csv + "
                "<name>_test_new_user.csv in the folder given as path (--data-path)"),
]}


# ---------------------------------------------------------------------- checksums and download
def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_hash_file(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Check ``path`` against the published checksum; for files without one, against the sha256
    recorded in ``<name>.sha256`` (`record_checksum`, after the first successful parse)."""
    path = Path(path)
    if remote.md5 is not None and (actual := file_hash(path, "md5")) != remote.md5:
        raise ChecksumError(path, "md5", remote.md5, actual)
    if remote.sha256 is not None:
        if (actual := file_hash(path, "sha256")) != remote.sha256:
            raise ChecksumError(path, "sha256", remote.sha256, actual)
        return
    record = recorded_hash_file(path)
    if record.exists():
        expected = record.read_text().split()[0]
        if (actual := file_hash(path, "sha256")) != expected:
            raise ChecksumError(
                path, f"sha256 (recorded in {record} when the file first parsed)", expected,
                actual, f"delete {path} to download it again, or delete {record} if the source "
                "file changed on purpose (the next successful load records the new hash)")


def record_checksum(path: Path) -> None:
    """Record ``path``'s sha256 beside it (never overwritten): called after the file parsed."""
    record = recorded_hash_file(path)
    if not record.exists():
        atomic_write_text(record, f"{file_hash(path, 'sha256')}  {Path(path).name}\n")


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` through a temporary file (with a progress bar)."""
    from tqdm.auto import tqdm

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=target.name) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _remove_stale(folder: Path) -> None:
    """Leftovers of an interrupted download, unzip or atomic write (``.*.tmp``, ``.unzip.*``)."""
    for leftover in list(folder.glob(".*.tmp")) + list(folder.glob(".unzip.*")):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def download(spec: DatasetSpec, folder: Path) -> Path:
    """Fetch every file of ``spec`` into ``folder / spec.name`` (skipped when cached and valid)
    and unzip; returns the folder to read. A failed download raises `DownloadError` and leaves
    no partial file, no partial unzip and no folder that this call created empty."""
    root = Path(folder) / spec.name
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    folder = root
    try:
        for remote in spec.files:
            target = root / remote.name
            if not target.exists():
                try:
                    fetch(remote.url, target)
                except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
                    raise DownloadError(remote.url, str(getattr(e, "reason", e)), (
                        f"Supply the files instead: download {remote.url} yourself and either "
                        f"pass the folder holding its (unzipped) files with --data-path DIR "
                        f"(Python: load_dataset({spec.name!r}, path=DIR); a notebook: set "
                        f"${path_variable(spec.name)}=DIR), or save it as "
                        f"{target} (the cache; set $COLDREC_DATA to use another folder)"
                    )) from None
            verify_file(target, remote)
            if remote.name.endswith(".zip"):
                folder = _unzip(target, root / remote.name[:-4])
    except BaseException:
        _remove_stale(root)
        if created and not any(root.iterdir()):
            root.rmdir()
        raise
    return folder


def _unzip(archive: Path, unpacked: Path) -> Path:
    """Unpack ``archive`` (whose top folder is ``unpacked.name``) into ``unpacked``, atomically."""
    import zipfile

    if not unpacked.is_dir():
        staging = Path(tempfile.mkdtemp(dir=unpacked.parent, prefix=".unzip."))
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
            os.replace(staging / unpacked.name, unpacked)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return unpacked


def path_variable(name: str) -> str:
    """The environment variable that points `load_dataset(name)` at a folder already holding the
    dataset's files (``ml-100k`` -> ``COLDREC_PATH_ML_100K``): how a notebook, which calls
    ``load_dataset`` without a path, reads a local copy instead of downloading."""
    return "COLDREC_PATH_" + name.upper().replace("-", "_")


def load_dataset(name: str, path: str | os.PathLike | None = None,
                 cache: str | os.PathLike | None = None) -> Interactions:
    """Load a registered dataset by name.

    ``path``: a folder that already holds the dataset's files (nothing is downloaded); without
    it, the folder named by ``$COLDREC_PATH_<NAME>`` (`path_variable`) if that is set.
    Otherwise the files are downloaded into ``cache`` (default: `cache_dir()`), verified and
    parsed; a file without a published checksum has its sha256 recorded once it parsed.
    """
    if name not in DATASETS:
        raise DataError("dataset registry", "name", f"one of {', '.join(DATASETS)} (or your own "
                        f"data through Interactions.from_frame); got unknown dataset {name!r}")
    spec = DATASETS[name]
    if path is None and os.environ.get(path_variable(name)):
        path = Path(os.environ[path_variable(name)]).expanduser()
        if not path.is_dir():
            raise DataError(f"${path_variable(name)}", None,
                            f"a folder holding {spec.description}; {path} is not a folder")
    if path is not None:
        return spec.reader(Path(path))
    if not spec.files:
        raise DataError(name, "path", f"a folder with the files ({spec.description}); there is "
                        "nothing to download: pass path=DIR (CLI: --data-path DIR)")
    root = Path(cache or cache_dir())
    data = spec.reader(download(spec, root))
    for remote in spec.files:
        if remote.md5 is None and remote.sha256 is None:
            record_checksum(root / spec.name / remote.name)
    return data
