"""One interactions table for every dataset, with the raw <-> internal id maps.

Conventions used everywhere in coldrec (taught in `00_foundations`, section "The data"):

* users are numbered ``0 .. n_users - 1`` and items ``1 .. n_items`` in the sorted order of their
  raw ids (numeric order for numeric ids); item ``0`` is the padding item (``PAD``), so padded
  item sequences can use 0 and a score matrix over the catalogue has ``n_items + 1`` columns whose
  column 0 is never recommended;
* ``frame`` has the columns ``user, item, rating, timestamp`` (internal ids) plus any extra
  columns the source had, sorted by user then time (ties keep the file order): see
  `sort_by_user_time`. `Sequences.from_frame` sorts the same way itself, so a frame in any row
  order still gives every user their own items;
* timestamps are numbers (unix seconds for dates): ``int64`` when every value is whole, else
  ``float64`` (fractional times keep their order). Datetimes and ISO 8601 strings are converted
  to unix seconds (naive ones read as UTC). ``inf``, NaN/NaT and values beyond ``int64`` are
  rejected, as are non-finite ratings;
* duplicate (user, item) pairs: by default (``duplicates="first"``) each pair keeps its first
  interaction by time and the later ones are dropped, with a warning and the count in
  ``n_duplicates_dropped`` (and `summary()`). Duplicates would otherwise be scored twice: under
  full ranking a held-out item that also sits in the user's history is masked and always a miss.
  Rows of different *parts* (a column ``part``: which file a row came from, see
  `cold_start_by_part`) belong to different users, so a pair repeated across parts is kept;
* user and item ids must be of one kind per column (all strings or all numbers): a mix such as
  ``1`` and ``"1"`` is a `DataError` (convert the column first, e.g. ``df["user"].astype(str)``);
* an *extra* column named ``user``, ``item``, ``rating`` or ``timestamp`` (one not passed as that
  argument) would overwrite the internal columns: it is a `DataError` asking to rename it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from .errors import DataError

PAD = 0
COLUMNS = ("user", "item", "rating", "timestamp")
PART = "part"  # optional column: the file a row came from; users of different parts differ
DUPLICATES = ("first", "keep", "error")
INT64_LIMIT = 2.0 ** 63


def sort_by_user_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by ``user``, each user's in ``timestamp`` order, ties in the current row
    order (stable). Returns ``frame`` itself when it is already in that order."""
    users = frame["user"].to_numpy()
    times = frame["timestamp"].to_numpy() if "timestamp" in frame.columns else np.zeros(len(users))
    same_user = users[1:] == users[:-1]
    if (np.all(users[1:] >= users[:-1]) and np.all(~same_user | (times[1:] >= times[:-1]))):
        return frame
    order = np.lexsort((np.arange(len(users)), times, users))
    return frame.iloc[order].reset_index(drop=True)


@dataclass
class Interactions:
    """User-item interactions with internal ids and the maps back to the raw ids."""

    frame: pd.DataFrame
    raw_users: np.ndarray  # raw_users[u] = raw id of internal user u
    raw_items: np.ndarray  # raw_items[i] = raw id of internal item i (raw_items[0] is the pad)
    name: str = "interactions"
    item_features: pd.DataFrame | None = None  # indexed by internal item id, e.g. genre columns
    user_features: pd.DataFrame | None = None  # indexed by internal user id, e.g. age, gender
    n_duplicates_dropped: int = 0  # repeated (user, item) rows dropped when the data was built
    source: str = "DataFrame"  # the file (or table) the interactions were read from, for errors
    _item_lookup: dict = field(default=None, repr=False)
    _user_lookup: dict = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        user: str = "user",
        item: str = "item",
        rating: str | None = "rating",
        timestamp: str | None = "timestamp",
        name: str = "my-data",
        item_features: pd.DataFrame | None = None,
        source: str = "DataFrame",
        user_features: pd.DataFrame | None = None,
        duplicates: str = "first",
    ) -> "Interactions":
        """Bring your own data: any DataFrame with a user and an item column.

        ``rating`` and ``timestamp`` may be ``None`` (implicit feedback gets rating 1; without a
        timestamp the row order is the time order). ``item_features`` / ``user_features`` are
        indexed by *raw* item / user id. Extra columns are kept. ``duplicates``: ``"first"``
        (keep each (user, item) pair's first interaction by time, warn with the count),
        ``"keep"`` (keep repeats, e.g. re-purchases) or ``"error"``. Errors name ``source``, the
        column, the row and what was expected (module docstring: the rules).
        """
        if duplicates not in DUPLICATES:
            raise ValueError(f"duplicates must be one of {DUPLICATES}; got {duplicates!r}")
        for col in (user, item, rating, timestamp):
            if col is not None and col not in df.columns:
                raise DataError(source, col, f"a column named {col!r}; found {list(df.columns)}")
        if len(df) == 0:
            raise DataError(source, None, "at least one interaction; the table is empty")
        extra = [c for c in df.columns if c not in {user, item, rating, timestamp}]
        for col in extra:
            if col in COLUMNS:
                raise DataError(source, col, f"no extra column named {col!r}: it would overwrite "
                                f"the internal {col} column; rename it (df.rename(columns=...)) "
                                f"or pass it as {col}={col!r}")
        raw_users, user_codes = np.unique(_ids(df, user, source), return_inverse=True)
        raw_items, item_codes = np.unique(_ids(df, item, source), return_inverse=True)
        frame = pd.DataFrame({
            "user": user_codes.astype(np.int64),
            "item": item_codes.astype(np.int64) + 1,
            "rating": _ratings(df, rating, source) if rating else np.ones(len(df), np.float32),
            "timestamp": _timestamps(df, timestamp, source) if timestamp else np.arange(len(df)),
        })
        for col in extra:
            frame[col] = df[col].to_numpy()
        frame = sort_by_user_time(frame)
        frame, n_dropped = _drop_duplicates(frame, duplicates, source)
        raw_items = np.concatenate([np.array([None], dtype=object), raw_items.astype(object)])
        features = None
        if item_features is not None:
            features = item_features.reindex(raw_items[1:])
            features.index = pd.RangeIndex(1, len(raw_items))
        users = None
        if user_features is not None:
            users = user_features.reindex(raw_users)
            users.index = pd.RangeIndex(len(raw_users))
        return cls(frame, raw_users.astype(object), raw_items, name, features, users, n_dropped,
                   str(source))

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.raw_users)

    @property
    def n_items(self) -> int:
        """Number of real items (the score matrix has ``n_items + 1`` columns)."""
        return len(self.raw_items) - 1

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return (f"Interactions({self.name!r}: {self.n_users:,} users, {self.n_items:,} items, "
                f"{len(self):,} interactions)")

    def summary(self) -> pd.Series:
        per_user = self.frame.groupby("user").size()
        return pd.Series({
            "users": self.n_users, "items": self.n_items, "interactions": len(self),
            "density": len(self) / (self.n_users * self.n_items),
            "median items per user": float(per_user.median()),
            "min items per user": int(per_user.min()),
            "duplicate rows dropped": self.n_duplicates_dropped,
        }, name=self.name)

    # ------------------------------------------------------------------ raw <-> internal ids
    def to_raw_items(self, items) -> np.ndarray:
        """Internal item ids (any array-like, e.g. a top-K tensor) -> raw item ids."""
        return self.raw_items[np.asarray(torch.as_tensor(items).cpu())]

    def to_internal_items(self, raw: Iterable) -> np.ndarray:
        if self._item_lookup is None:
            self._item_lookup = {r: i for i, r in enumerate(self.raw_items) if i != PAD}
        try:
            return np.array([self._item_lookup[r] for r in raw], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"raw item id {e.args[0]!r} is not in {self.name}") from None

    def to_internal_users(self, raw: Iterable) -> np.ndarray:
        if self._user_lookup is None:
            self._user_lookup = {r: u for u, r in enumerate(self.raw_users)}
        try:
            return np.array([self._user_lookup[r] for r in raw], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"raw user id {e.args[0]!r} is not in {self.name}") from None

    # ------------------------------------------------------------------ derived tables
    def subset(self, mask, name: str | None = None) -> "Interactions":
        """Keep the rows where ``mask`` is true and renumber users and items densely."""
        kept = self.frame[np.asarray(mask)]
        raw = kept.drop(columns=["user", "item"]).copy()
        raw.insert(0, "user", self.raw_users[kept["user"].to_numpy()])
        raw.insert(1, "item", self.raw_items[kept["item"].to_numpy()])
        features = users = None
        if self.item_features is not None:
            features = self.item_features.copy()
            features.index = self.raw_items[1:]
        if self.user_features is not None:
            users = self.user_features.copy()
            users.index = self.raw_users
        out = Interactions.from_frame(raw, name=name or self.name, item_features=features,
                                      user_features=users, source=f"{self.name} (subset)",
                                      duplicates="keep")
        out.n_duplicates_dropped, out.source = self.n_duplicates_dropped, self.source
        return out

    def item_popularity(self) -> torch.Tensor:
        """Interaction count per item, shape ``[n_items + 1]`` (the pad counts 0)."""
        counts = np.bincount(self.frame["item"].to_numpy(), minlength=self.n_items + 1)
        return torch.as_tensor(counts, dtype=torch.float32)


def _row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _ids(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    """The id column as an array; missing ids and a mix of strings and numbers are errors."""
    values = df[col]
    if values.isna().any():
        raise DataError(source, col, f"an id in every row; row {_row(values.isna().to_numpy())} "
                        "is missing one (NaN)")
    values = values.to_numpy()
    if values.dtype == object:
        is_str = np.fromiter((isinstance(v, str) for v in values), bool, len(values))
        if is_str.any() and not is_str.all():
            row = _row(is_str != is_str[0])
            raise DataError(source, col, f"ids of one kind (all strings or all numbers); row 0 "
                            f"has {values[0]!r} but row {row} has {values[row]!r}; convert the "
                            f"column first, e.g. df[{col!r}] = df[{col!r}].astype(str)")
    return values


def _numeric(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = _row(bad)
        value = df[col].iloc[row]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(source, col, f"a number in every row; row {row} has {value!r}")
    return values.to_numpy(np.float64)


def _ratings(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    values = _numeric(df, col, source)
    bad = ~np.isfinite(values)
    if bad.any():
        row = _row(bad)
        raise DataError(source, col, f"a finite rating in every row; row {row} has {values[row]}")
    return values.astype(np.float32)


def _timestamps(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    """Numbers as they are, datetimes and ISO 8601 strings as unix seconds (naive = UTC);
    int64 when every value is whole, else float64 (see the module docstring)."""
    column = df[col]
    numbers = pd.to_numeric(column, errors="coerce") if not _is_datetime(column) else None
    if numbers is not None and not (numbers.isna() & column.notna()).any():
        values = _numeric(df, col, source)  # all numbers (a missing one is reported here)
        bad = ~np.isfinite(values) | (np.abs(values) >= INT64_LIMIT)
        if bad.any():
            row = _row(bad)
            raise DataError(source, col, f"a finite timestamp (e.g. unix seconds) below 9.2e18 "
                            f"in every row; row {row} has {values[row]}")
    else:
        dates = (column if _is_datetime(column) else
                 pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601"))
        if dates.isna().any():
            row = _row(dates.isna().to_numpy())
            raise DataError(source, col, f"a number, a datetime or an ISO 8601 date string in "
                            f"every row; row {row} has {column.iloc[row]!r}")
        if getattr(dates.dt, "tz", None) is not None:
            dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
        nanoseconds = dates.to_numpy("datetime64[ns]").astype(np.int64)
        if (nanoseconds % 10**9 == 0).all():
            return nanoseconds // 10**9
        return nanoseconds / 1e9
    whole = values == np.round(values)
    return values.astype(np.int64) if whole.all() else values


def _is_datetime(column: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(column)


def _drop_duplicates(frame: pd.DataFrame, policy: str, source: str) -> tuple[pd.DataFrame, int]:
    """Apply the duplicate (user, item) policy to a frame sorted by user, time."""
    if policy == "keep":
        return frame, 0
    keys = ["user", "item"] + ([PART] if PART in frame.columns else [])
    repeated = frame.duplicated(subset=keys, keep="first").to_numpy()
    n_dropped = int(repeated.sum())
    if n_dropped == 0:
        return frame, 0
    if policy == "error":
        raise DataError(source, "item", f"each (user, item) pair once; {n_dropped} rows repeat "
                        "a pair (pass duplicates='first' to keep each pair's first interaction)")
    warnings.warn(f"{source}: dropped {n_dropped:,} duplicate (user, item) rows, keeping each "
                  "pair's first interaction by time (duplicates='keep' keeps them)", stacklevel=3)
    return frame[~repeated].reset_index(drop=True), n_dropped
