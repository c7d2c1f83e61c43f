"""Registry of real datasets: download with a checksum, cache, parse into `Interactions`.

Downloads happen on the user's machine (Colab or laptop), never in the tests. The cache folder is
``$COLDREC_DATA`` if set, else ``data/`` at the top of a source checkout, else
``~/.cache/coldrec``. ``load_dataset(name, path=...)`` reads files that are already on disk.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import ChecksumError, DataError
from .interactions import Interactions

ML_GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]


@dataclass(frozen=True)
class RemoteFile:
    url: str
    name: str  # file name in the cache folder
    md5: str | None = None
    sha256: str | None = None  # None: recorded on first download, checked afterwards


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[RemoteFile, ...]
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
def read_table(path: Path, sep: str, columns: list[str], header: bool = False,
               numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a delimited file and check its shape; errors name the file, the line and the field.

    Columns in ``numeric`` are parsed as numbers in the fast path (ML-20M has 20M rows); when a
    value is not a number the file is re-read as text to report where.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "the file to exist")
    if path.stat().st_size == 0:
        raise DataError(path, None, "a non-empty file")
    options = dict(sep=sep, header=0 if header else None, engine="python" if len(sep) > 1 else "c",
                   encoding="latin-1", keep_default_na=False, na_values=[""])
    positions = {columns.index(c): "float64" for c in numeric}
    try:
        try:
            df = pd.read_csv(path, dtype={**{i: str for i in range(len(columns))}, **positions},
                             **options)
        except ValueError:  # a non-number in a numeric column: find it in the text
            df = pd.read_csv(path, dtype=str, **options)
    except pd.errors.EmptyDataError:
        raise DataError(path, None, "a non-empty file") from None
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


RATING_COLUMNS = ["user", "item", "rating", "timestamp"]


def _ratings(path: Path, sep: str, header: bool = False) -> pd.DataFrame:
    table = read_table(path, sep, RATING_COLUMNS, header, numeric=tuple(RATING_COLUMNS))
    return _ids_are_integers(table, path, header=header)


def _item_table(items: pd.DataFrame, genres: list[tuple]) -> pd.DataFrame:
    """Item side information indexed by raw item id: title and a tuple of genres."""
    return pd.DataFrame({"title": items["title"].to_numpy(), "genres": genres},
                        index=items["item"].astype(np.int64).to_numpy())


def read_movielens_100k(folder: Path) -> Interactions:
    """`u.data` plus genres from `u.item` (official) or `ml-100k.item` (tab-separated layout)."""
    folder = Path(folder)
    df, genres = _ratings(folder / "u.data", "\t"), None
    if (folder / "u.item").exists():
        items = read_table(folder / "u.item", "|", ["item", "title", "release", "video_release",
                                                    "url"] + ML_GENRES_100K)
        flags = items[ML_GENRES_100K].to_numpy() == "1"
        genres = _item_table(items, [tuple(np.array(ML_GENRES_100K)[f]) for f in flags])
    elif (folder / "ml-100k.item").exists():
        items = read_table(folder / "ml-100k.item", "\t", ["item", "title", "year", "genres"],
                           header=True)
        genres = _item_table(items, [tuple(g.split()) for g in items["genres"]])
    return Interactions.from_frame(df, name="ml-100k", item_features=genres,
                                   source=folder / "u.data")


def _read_movielens(folder: Path, ratings: str, movies: str, sep: str, header: bool,
                    name: str) -> Interactions:
    """ML-1M (`::`-separated .dat) and ML-20M (.csv with a header): ratings plus genres."""
    folder = Path(folder)
    df, genres = _ratings(folder / ratings, sep, header), None
    if (folder / movies).exists():
        items = read_table(folder / movies, sep, ["item", "title", "genres"], header)
        genres = _item_table(items, [tuple(g.split("|")) for g in items["genres"]])
    return Interactions.from_frame(df, name=name, item_features=genres, source=folder / ratings)


def read_movielens_1m(folder: Path) -> Interactions:
    return _read_movielens(folder, "ratings.dat", "movies.dat", "::", False, "ml-1m")


def read_movielens_20m(folder: Path) -> Interactions:
    return _read_movielens(folder, "ratings.csv", "movies.csv", ",", True, "ml-20m")


def read_electronics(folder: Path) -> Interactions:
    """MetaTL's Amazon Electronics files; column ``part`` says which file a row came from."""
    folder = Path(folder)
    parts = []
    for part in ("train", "test_new_user"):
        path = folder / f"electronics_{part}.csv"
        columns = ["user", "item", "timestamp"]
        df = _ids_are_integers(read_table(path, "\t", columns, numeric=tuple(columns)), path)
        df["part"] = part
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    return Interactions.from_frame(df, rating=None, name="electronics", source=folder)


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
]}


# ---------------------------------------------------------------------- checksums and download
def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Check ``path`` against the published checksum; for files without one, against the sha256
    recorded in ``<name>.sha256`` on first download (written then, never overwritten)."""
    path = Path(path)
    if remote.md5 is not None and (actual := file_hash(path, "md5")) != remote.md5:
        raise ChecksumError(path, "md5", remote.md5, actual)
    if remote.sha256 is not None:
        if (actual := file_hash(path, "sha256")) != remote.sha256:
            raise ChecksumError(path, "sha256", remote.sha256, actual)
        return
    record = path.with_name(path.name + ".sha256")
    actual = file_hash(path, "sha256")
    if record.exists():
        expected = record.read_text().split()[0]
        if actual != expected:
            raise ChecksumError(path, "sha256 (recorded on first download)", expected, actual)
    else:
        atomic_write_text(record, f"{actual}  {path.name}\n")


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


def download(spec: DatasetSpec, folder: Path) -> Path:
    """Fetch every file of ``spec`` into ``folder`` (skipped when cached and valid); unzip."""
    import pooch  # imported here: tests and offline use never need it

    folder = Path(folder) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for remote in spec.files:
        target = folder / remote.name
        if not target.exists():
            pooch.retrieve(remote.url, known_hash=None, fname=remote.name, path=folder,
                           progressbar=True)
        verify_file(target, remote)
        if remote.name.endswith(".zip"):
            import zipfile
            unpacked = folder / remote.name[:-4]
            if not unpacked.is_dir():
                with zipfile.ZipFile(target) as archive:
                    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".unzip."))
                    archive.extractall(staging)
                    os.replace(staging / remote.name[:-4], unpacked)
                    staging.rmdir()
            folder = unpacked
    return folder


def load_dataset(name: str, path: str | os.PathLike | None = None,
                 cache: str | os.PathLike | None = None) -> Interactions:
    """Load a registered dataset by name.

    ``path``: a folder that already holds the dataset's files (nothing is downloaded).
    Otherwise the files are downloaded into ``cache`` (default: `cache_dir()`), verified and parsed.
    """
    if name not in DATASETS:
        raise DataError("dataset registry", "name", f"one of {', '.join(DATASETS)} (or your own "
                        f"data through Interactions.from_frame); got unknown dataset {name!r}")
    spec = DATASETS[name]
    folder = Path(path) if path is not None else download(spec, Path(cache or cache_dir()))
    return spec.reader(folder)
