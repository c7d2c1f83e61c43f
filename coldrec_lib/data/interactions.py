"""One interactions table for every dataset, with the raw <-> internal id maps.

Conventions used everywhere in coldrec (taught in `00_foundations`, section "The data"):

* users are numbered ``0 .. n_users - 1``;
* items are numbered ``1 .. n_items``; item ``0`` is the padding item (``PAD``), so padded item
  sequences can use 0 and a score matrix over the catalogue has ``n_items + 1`` columns whose
  column 0 is never recommended;
* ``frame`` has the columns ``user, item, rating, timestamp`` (internal ids) plus any extra
  columns the source had, sorted by user then time (ties keep the file order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from .errors import DataError

PAD = 0
COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass
class Interactions:
    """User-item interactions with internal ids and the maps back to the raw ids."""

    frame: pd.DataFrame
    raw_users: np.ndarray  # raw_users[u] = raw id of internal user u
    raw_items: np.ndarray  # raw_items[i] = raw id of internal item i (raw_items[0] is the pad)
    name: str = "interactions"
    item_features: pd.DataFrame | None = None  # indexed by internal item id, e.g. genre columns
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
    ) -> "Interactions":
        """Bring your own data: any DataFrame with a user and an item column.

        ``rating`` and ``timestamp`` may be ``None`` (implicit feedback gets rating 1; without a
        timestamp the row order is the time order). ``item_features`` is indexed by *raw* item id.
        Extra columns are kept. Errors name ``source``, the column and what was expected.
        """
        for col in (user, item, rating, timestamp):
            if col is not None and col not in df.columns:
                raise DataError(source, col, f"a column named {col!r}; found {list(df.columns)}")
        if len(df) == 0:
            raise DataError(source, None, "at least one interaction; the table is empty")
        out = pd.DataFrame(index=df.index)
        for col in (user, item):
            if df[col].isna().any():
                row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
                raise DataError(source, col, f"an id in every row; row {row} is missing one (NaN)")
        out["raw_user"] = df[user].to_numpy()
        out["raw_item"] = df[item].to_numpy()
        out["rating"] = _numeric(df, rating, source) if rating else 1.0
        out["timestamp"] = _numeric(df, timestamp, source) if timestamp else np.arange(len(df))
        extra = [c for c in df.columns if c not in {user, item, rating, timestamp}]
        for col in extra:
            out[col] = df[col].to_numpy()
        raw_users, user_codes = np.unique(out["raw_user"].to_numpy(), return_inverse=True)
        raw_items, item_codes = np.unique(out["raw_item"].to_numpy(), return_inverse=True)
        frame = pd.DataFrame({
            "user": user_codes.astype(np.int64),
            "item": item_codes.astype(np.int64) + 1,
            "rating": out["rating"].to_numpy(np.float32),
            "timestamp": out["timestamp"].to_numpy(np.int64),
        })
        for col in extra:
            frame[col] = out[col].to_numpy()
        frame["_order"] = np.arange(len(frame))
        frame = frame.sort_values(["user", "timestamp", "_order"]).drop(columns="_order")
        frame = frame.reset_index(drop=True)
        raw_items = np.concatenate([np.array([None], dtype=object), raw_items.astype(object)])
        features = None
        if item_features is not None:
            features = item_features.reindex(raw_items[1:])
            features.index = pd.RangeIndex(1, len(raw_items))
        return cls(frame, raw_users.astype(object), raw_items, name, features)

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
        features = None
        if self.item_features is not None:
            features = self.item_features.copy()
            features.index = self.raw_items[1:]
        return Interactions.from_frame(raw, name=name or self.name, item_features=features,
                                       source=f"{self.name} (subset)")

    def item_popularity(self) -> torch.Tensor:
        """Interaction count per item, shape ``[n_items + 1]`` (the pad counts 0)."""
        counts = np.bincount(self.frame["item"].to_numpy(), minlength=self.n_items + 1)
        return torch.as_tensor(counts, dtype=torch.float32)


def _numeric(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(source, col, f"a number in every row; row {row} has {df[col].iloc[row]!r}")
    return values.to_numpy()
