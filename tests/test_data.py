import hashlib
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from coldrec_lib.data import (DATASETS, ChecksumError, DataError, Interactions, TaskSampler,
                              cold_start_by_time, filter_min_counts, filter_rating, k_core,
                              load_dataset, make_synthetic, verify_file)
from coldrec_lib.data.datasets import RemoteFile, download, read_table, record_checksum


# ---------------------------------------------------------------- real data
def test_ml100k_parser_reads_the_real_file(ml100k_folder):
    data = load_dataset("ml-100k", path=ml100k_folder)
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100_000)
    assert set(data.frame["rating"].unique()) == {1, 2, 3, 4, 5}
    toy_story = data.to_internal_items([1])[0]
    assert data.item_features.loc[toy_story, "genres"] == ("Animation", "Children's", "Comedy")
    # every user's rows are in time order
    assert (data.frame.groupby("user")["timestamp"].diff().dropna() >= 0).all()


def test_ml100k_filters(ml100k_folder):
    data = load_dataset("ml-100k", path=ml100k_folder)
    positives = filter_rating(data, 3.5)
    assert len(positives) == int((data.frame["rating"] > 3.5).sum())
    core = k_core(positives, 5, 5)
    assert core.frame.groupby("user").size().min() >= 5
    assert core.frame.groupby("item").size().min() >= 5


# ---------------------------------------------------------------- your own data
def test_bring_your_own_dataframe_keeps_raw_ids():
    df = pd.DataFrame({"uid": ["ann", "bob", "ann", "cy"], "sku": ["x9", "x9", "y1", "z5"],
                       "when": [3, 1, 2, 5], "stars": [5, 3, 4, 1]})
    data = Interactions.from_frame(df, user="uid", item="sku", rating="stars", timestamp="when")
    assert (data.n_users, data.n_items) == (3, 3)
    ann = data.to_internal_users(["ann"])[0]
    rows = data.frame[data.frame["user"] == ann]
    assert list(data.to_raw_items(rows["item"])) == ["y1", "x9"]  # time order: 2 then 3
    assert data.frame["item"].min() == 1  # 0 is the padding item
    with pytest.raises(KeyError, match="raw item id 'nope'"):
        data.to_internal_items(["nope"])


def test_dataframe_errors_name_the_column():
    df = pd.DataFrame({"user": [1, 2], "item": [1, None], "rating": [1, 2], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="field 'item'.*NaN"):
        Interactions.from_frame(df)
    df = pd.DataFrame({"user": [1], "item": [1], "rating": ["good"], "timestamp": [1]})
    with pytest.raises(DataError, match="field 'rating'.*'good'"):
        Interactions.from_frame(df)
    with pytest.raises(DataError, match="column named 'user'"):
        Interactions.from_frame(pd.DataFrame({"u": [1], "item": [1]}))


def test_duplicate_pairs_keep_the_first_by_time_and_say_how_many():
    df = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [5, 6, 5, 5, 5],
                       "rating": [1, 2, 3, 4, 5], "timestamp": [30, 20, 10, 1, 1]})
    with pytest.warns(UserWarning, match="dropped 2 duplicate"):
        data = Interactions.from_frame(df)
    assert data.n_duplicates_dropped == 2 and data.summary()["duplicate rows dropped"] == 2
    kept = data.frame.assign(user=data.raw_users[data.frame["user"]],
                             item=data.raw_items[data.frame["item"]])
    assert kept[["user", "item", "rating"]].values.tolist() == [[1, 5, 3], [1, 6, 2], [2, 5, 4]]
    assert len(Interactions.from_frame(df, duplicates="keep")) == 5
    with pytest.raises(DataError, match="each \\(user, item\\) pair once; 2 rows repeat"):
        Interactions.from_frame(df, duplicates="error")


def test_mixed_id_kinds_are_a_clear_error():
    df = pd.DataFrame({"user": [1, "1", 2], "item": [1, 2, 3]})
    with pytest.raises(DataError, match="field 'user'.*ids of one kind.*row 1 has '1'.*astype"):
        Interactions.from_frame(df, rating=None, timestamp=None)


def test_datetime_and_iso_timestamps_become_unix_seconds():
    when = ["2020-01-01T00:00:00Z", "2020-01-01T00:00:02Z", "2019-12-31T23:59:59Z"]
    for column in (when, pd.to_datetime(when)):
        data = Interactions.from_frame(pd.DataFrame({"user": [1, 1, 1], "item": [1, 2, 3],
                                                     "timestamp": column}), rating=None)
        assert data.frame["timestamp"].tolist() == [1577836799, 1577836800, 1577836802]
        assert list(data.to_raw_items(data.frame["item"])) == [3, 1, 2]
    with pytest.raises(DataError, match="field 'timestamp'.*ISO 8601.*row 1 has 'soon'"):
        Interactions.from_frame(pd.DataFrame({"user": [1, 1], "item": [1, 2],
                                              "timestamp": ["2020-01-01", "soon"]}), rating=None)


@pytest.mark.parametrize("column, values, message", [
    ("timestamp", [1.0, np.inf], "field 'timestamp'.*finite timestamp.*row 1 has inf"),
    ("timestamp", [1.0, 1e30], "field 'timestamp'.*row 1 has 1e\\+30"),
    ("timestamp", [pd.Timestamp("2020-01-01"), pd.NaT], "field 'timestamp'.*row 1 has NaT"),
    ("rating", [np.inf, 1.0], "field 'rating'.*finite rating.*row 0 has inf"),
    ("rating", [1.0, np.nan], "field 'rating'.*a number in every row; row 1 has nan"),
])
def test_non_finite_times_and_ratings_are_rejected(column, values, message):
    df = pd.DataFrame({"user": [1, 1], "item": [1, 2], "rating": [1.0, 2.0], "timestamp": [1, 2]})
    df[column] = values
    with pytest.raises(DataError, match=message):
        Interactions.from_frame(df)


def test_fractional_timestamps_keep_their_order():
    df = pd.DataFrame({"user": [1, 1, 1], "item": [1, 2, 3], "timestamp": [10.7, 10.2, 10.5]})
    data = Interactions.from_frame(df, rating=None)
    assert list(data.to_raw_items(data.frame["item"])) == [2, 3, 1]
    assert data.frame["timestamp"].tolist() == [10.2, 10.5, 10.7]
    whole = Interactions.from_frame(df.assign(timestamp=[3.0, 1.0, 2.0]), rating=None)
    assert whole.frame["timestamp"].dtype == np.int64


@pytest.mark.parametrize("extra", ["user", "item", "rating", "timestamp"])
def test_an_extra_column_cannot_overwrite_internal_ones(extra):
    df = pd.DataFrame({"uid": [1, 2, 3], "sku": [4, 5, 6], "stars": [1, 2, 3], "when": [1, 2, 3]})
    df[extra] = 7
    with pytest.raises(DataError, match=f"field '{extra}'.*would overwrite.*rename it"):
        Interactions.from_frame(df, user="uid", item="sku", rating="stars", timestamp="when")


# ---------------------------------------------------------------- bad input files
def write(tmp_path, text, name="u.data"):
    path = tmp_path / name
    path.write_text(text)
    return tmp_path


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'ml-200k'"):
        load_dataset("ml-200k")


@pytest.mark.parametrize("content, message", [
    pytest.param("1\t2\t3\n4\t5\t6\n", r"u\.data: expected 4 '\\t'-separated columns",
                 id="wrong-column-count"),
    pytest.param("1\t2\t3\t100\n4\t5\n", "field 'rating'.*line 2", id="short-row"),
    pytest.param("1\t2\t3\t100\nabc\t5\t3\t101\n",
                 "u.data, field 'user': expected a number; line 2 has 'abc'", id="non-numeric-id"),
    pytest.param("1.5\t2\t3\t100\n", "field 'user': expected an integer id; line 1", id="fractional-id"),
    pytest.param("", "u.data: expected a non-empty file", id="empty-file"),
    pytest.param("1\t2\tNaN\t100\n", "field 'rating': expected a number; line 1 has 'NaN'", id="nan"),
])
def test_malformed_file(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_dataset("ml-100k", path=write(tmp_path, content))


def test_path_variable_points_a_notebook_at_a_local_copy(tmp_path, monkeypatch):
    """load_dataset(name) without a path reads $COLDREC_PATH_<NAME> instead of downloading (an
    empty cache proves nothing was fetched); a variable naming no folder is an error naming it."""
    (tmp_path / "copy").mkdir()
    folder = write(tmp_path / "copy", "196\t242\t3\t881250949\n22\t377\t1\t878887116\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("COLDREC_PATH_ML_100K", str(folder))
    data = load_dataset("ml-100k", cache=cache)
    assert (data.n_users, len(data)) == (2, 2) and not cache.exists()
    assert load_dataset("ml-100k", path=folder, cache=cache).frame.equals(data.frame)
    monkeypatch.setenv("COLDREC_PATH_ML_100K", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"\$COLDREC_PATH_ML_100K: expected a folder holding "
                                        r"MovieLens 100K.*missing is not a folder"):
        load_dataset("ml-100k", cache=cache)


def test_checksum_mismatch(tmp_path):
    path = tmp_path / "ml-100k.zip"
    path.write_bytes(b"not the archive")
    with pytest.raises(ChecksumError, match="ml-100k.zip: expected md5 0e33842e"):
        verify_file(path, DATASETS["ml-100k"].files[0])


def test_truncated_download_is_caught_before_unzipping(tmp_path):
    """A cached archive cut short fails its checksum; nothing is unpacked from it."""
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("demo/u.data", "1\t1\t5\t100\n" * 1000)
    good = archive.read_bytes()
    remote = RemoteFile("https://example.invalid/demo.zip", "demo.zip",
                        sha256=hashlib.sha256(good).hexdigest())
    spec = type(DATASETS["ml-100k"])("demo", (remote,), DATASETS["ml-100k"].reader, "demo")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.zip").write_bytes(good[: len(good) // 2])
    with pytest.raises(ChecksumError, match="truncated or corrupted"):
        download(spec, tmp_path)
    assert not (tmp_path / "demo" / "demo").exists()
    (tmp_path / "demo" / "demo.zip").write_bytes(good)  # the complete file is accepted
    assert (download(spec, tmp_path) / "u.data").exists()


def test_recorded_checksum_for_files_without_a_published_one(tmp_path):
    path = tmp_path / "electronics_train.csv"
    path.write_text("1\t1\t100\n")
    remote = RemoteFile("https://example.invalid/e.csv", path.name)
    verify_file(path, remote)  # nothing recorded yet: nothing to check, nothing written
    assert not (tmp_path / "electronics_train.csv.sha256").exists()
    record_checksum(path)  # load_dataset does this once the files parsed
    verify_file(path, remote)
    path.write_text("1\t1\t100\n2\t2\t200\n")
    with pytest.raises(ChecksumError, match="recorded in .*electronics_train.csv.sha256.*delete"):
        verify_file(path, remote)


def test_k_larger_than_every_history(synthetic):
    split = cold_start_by_time(synthetic)
    with pytest.raises(DataError, match="no user has enough items"):
        split.eval_set("test", k=500)
    with pytest.raises(DataError, match="no user has enough items"):
        TaskSampler(split.train_sequences(), k=500)


def test_read_table_reports_header_offset(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\n1\t2\n3\t\n")
    with pytest.raises(DataError, match="line 3"):
        read_table(path, "\t", ["a", "b"], header=True)


# ---------------------------------------------------------------- filters
def test_k_core_is_a_fixed_point(synthetic):
    core = k_core(synthetic, 15, 15)
    assert len(core) < len(synthetic)
    assert core.frame.groupby("user").size().min() >= 15
    assert core.frame.groupby("item").size().min() >= 15
    assert len(k_core(core, 15, 15)) == len(core)


def test_min_counts_single_pass(synthetic):
    kept = filter_min_counts(synthetic, min_user=10, min_item=20)
    assert kept.frame.groupby("user").size().min() >= 10


def test_filter_that_removes_everything_says_so(synthetic):
    with pytest.raises(DataError, match="rating > 5"):
        filter_rating(synthetic, 5)


# ---------------------------------------------------------------- synthetic data
def test_synthetic_is_seeded_and_structured():
    a, b = make_synthetic(seed=3), make_synthetic(seed=3)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not make_synthetic(seed=4).frame.equals(a.frame)
    counts = np.sort(a.item_popularity().numpy()[1:])[::-1]
    assert counts[: len(counts) // 10].sum() > 3 * counts[-len(counts) // 10:].sum()  # skew
    assert a.frame.groupby("user")["item"].apply(lambda s: s.is_unique).all()  # no repeats
    assert set(a.frame["rating"].unique()) <= {1, 2, 3, 4, 5}


def test_synthetic_transitions_are_predictable():
    """The next item's cluster follows the user's shift far above chance (1 / n_clusters)."""
    data = make_synthetic(n_users=400, seed=1)
    cluster = data.item_features["cluster"].to_numpy()
    c = cluster[data.frame["item"].to_numpy() - 1]
    same_user = data.frame["user"].to_numpy()
    shift = (c[1:] - c[:-1]) % 12
    ok = same_user[1:] == same_user[:-1]
    # the most common shift per user explains far more transitions than chance
    frame = pd.DataFrame({"user": same_user[1:][ok], "shift": shift[ok]})
    top_share = frame.groupby("user")["shift"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert top_share.mean() > 0.5


# ---------------------------------------------------------------- sequences and tasks
def test_task_sampler_windows_are_contiguous(synthetic):
    split = cold_start_by_time(synthetic)
    seqs = split.train_sequences()
    sampler = TaskSampler(seqs, k=3)
    tasks = sampler.sample(512, torch.Generator().manual_seed(0))
    assert tasks.support.shape == (512, 3) and tasks.query.shape == (512, 1)
    assert (seqs.lengths[tasks.users] >= 4).all()
    for n in range(0, 512, 37):  # each window occurs in its user's sequence
        u = int(tasks.users[n])
        full = seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]].tolist()
        window = tasks.support[n].tolist() + tasks.query[n].tolist()
        assert any(full[s:s + 4] == window for s in range(len(full) - 3))
    again = sampler.sample(512, torch.Generator().manual_seed(0))
    assert torch.equal(again.support, tasks.support)


def test_sequences_last_is_left_padded(synthetic):
    seqs = cold_start_by_time(synthetic).train_sequences()
    users = torch.nonzero(seqs.lengths > 0).flatten()[:5]
    out = seqs.last(users, 100)
    for row, u in zip(out, users):
        n = int(seqs.lengths[u])
        assert (row[: 100 - n] == 0).all()
        assert row[100 - n:].tolist() == seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]].tolist()
