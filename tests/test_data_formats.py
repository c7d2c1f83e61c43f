"""Readers on the files exactly as published (bytes and encodings), the MetaTL-format reader,
compressed / BOM files, failed downloads and recorded checksums. No network."""
import gzip
import hashlib
import zipfile

import numpy as np
import pytest

from coldrec_lib.data import (DATASETS, ChecksumError, DataError, Sequences, cold_start_by_part,
                              filter_rating, leave_one_out, load_dataset)
from coldrec_lib.data import datasets
from coldrec_lib.data.datasets import RemoteFile, download, read_metatl_format
from coldrec_lib.data.errors import DownloadError

# ---------------------------------------------------------------- MovieLens as published
# u.item: latin-1, the video-release field empty on every line, item 267 without date or URL
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)"
    "|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?GoldenEye%20(1995)"
    "|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
    "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "1633|\u00c1 k\u00f6ldum klaka (Cold Fever) (1994)|08-Mar-1996||"
    "http://us.imdb.com/M/title-exact?Kaldum%20klaka,%20A%20(1994)"
    "|0|0|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
).encode("latin-1")
U_USER = b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n"
U_DATA = (b"1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n"
          b"2\t267\t2\t888551000\n3\t1633\t4\t889237269\n3\t2\t1\t889237455\n")


def official_100k(tmp_path):
    for name, content in (("u.data", U_DATA), ("u.item", U_ITEM), ("u.user", U_USER)):
        (tmp_path / name).write_bytes(content)
    return tmp_path


def test_ml100k_official_layout(tmp_path):
    data = load_dataset("ml-100k", path=official_100k(tmp_path))
    assert (data.n_users, data.n_items, len(data)) == (3, 4, 6)
    titles = dict(zip(data.raw_items[1:], data.item_features["title"]))
    assert titles[1633] == "\u00c1 k\u00f6ldum klaka (Cold Fever) (1994)"  # latin-1 decoded
    assert titles[267] == "unknown"
    genres = dict(zip(data.raw_items[1:], data.item_features["genres"]))
    assert genres[1] == ("Animation", "Children's", "Comedy") and genres[267] == ("unknown",)
    user_3 = data.user_features.loc[data.to_internal_users([3])[0]]
    assert (user_3["age"], user_3["gender"], user_3["occupation"], user_3["zip"]) == (
        23, "M", "writer", "T8H1N")
    liked = filter_rating(data, 3)  # a subset renumbers users: their features follow
    assert liked.user_features.loc[liked.to_internal_users([3])[0], "zip"] == "T8H1N"


def test_ml100k_shared_layout_keeps_working(ml100k_folder):
    data = load_dataset("ml-100k", path=ml100k_folder)
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100_000)
    assert data.item_features.loc[data.to_internal_items([1])[0], "title"] == "Toy Story"
    assert data.user_features.loc[data.to_internal_users([1])[0], "occupation"] == "technician"


def test_ml1m_official_layout(tmp_path):
    (tmp_path / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::73::3::978302109\n"
                                           b"2::1193::4::978298413\n")
    (tmp_path / "movies.dat").write_bytes(
        "73::Mis\u00e9rables, Les (1995)::Drama|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        '1::"Great Day in Harlem, A" (1994)::Documentary\n'.encode("latin-1"))
    (tmp_path / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    data = load_dataset("ml-1m", path=tmp_path)
    titles = dict(zip(data.raw_items[1:], data.item_features["title"]))
    assert titles[73] == "Mis\u00e9rables, Les (1995)"
    assert data.item_features.loc[data.to_internal_items([73])[0], "genres"] == ("Drama", "Musical")
    assert data.user_features.loc[data.to_internal_users([2])[0], "gender"] == "M"
    assert data.user_features.loc[data.to_internal_users([2])[0], "age"] == 56


def test_ml20m_official_layout(tmp_path):
    (tmp_path / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n"
                                           b"1,2,3.5,1112486027\n1,29,3.5,1112484676\n"
                                           b"2,131260,4.0,1112484819\n")
    (tmp_path / "movies.csv").write_bytes(
        "movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n"
        '29,"City of Lost Children, The (Cit\u00e9 des enfants perdus, La) (1995)",'
        "Adventure|Drama|Fantasy|Mystery|Sci-Fi\n"
        "131260,Rentun Ruusu (2001),(no genres listed)\n".encode("utf-8"))
    data = load_dataset("ml-20m", path=tmp_path)
    assert sorted(data.frame["rating"]) == [3.5, 3.5, 4.0]
    feats = data.item_features.set_index(data.raw_items[1:])
    assert feats.loc[29, "title"] == ("City of Lost Children, The "
                                      "(Cit\u00e9 des enfants perdus, La) (1995)")  # UTF-8
    assert feats.loc[131260, "genres"] == ()


# ---------------------------------------------------------------- BOM and compressed files
def test_utf8_bom_is_read(tmp_path):
    (tmp_path / "u.data").write_bytes(b"\xef\xbb\xbf" + U_DATA)
    assert len(load_dataset("ml-100k", path=tmp_path)) == 6


@pytest.mark.parametrize("pack, message", [
    (gzip.compress, "gzip-compressed: decompress it first"),
    (lambda b: b"PK\x03\x04" + b, "zip archive: unzip it"),
])
def test_compressed_file_says_so(tmp_path, pack, message):
    (tmp_path / "u.data").write_bytes(pack(U_DATA))
    with pytest.raises(DataError, match=f"u.data: expected a plain-text table; this file is .*{message}"):
        load_dataset("ml-100k", path=tmp_path)


# ---------------------------------------------------------------- MetaTL's layout, any name
def metatl_files(folder, name, n_train=3, n_new=2):
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("test_new_user", n_new)):
        rows = [f"{u}\t{1 + (u + s) % 7}\t{100 + s}" for u in range(1, n + 1) for s in range(5)]
        (folder / f"{name}_{part}.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_metatl_format_reads_any_name(tmp_path):
    folder = metatl_files(tmp_path / "mine", "books")
    data = load_dataset("metatl-format", path=folder)
    assert data.name == "books"
    assert sorted(data.frame["part"].unique()) == ["test_new_user", "train"]
    assert len(data) == 25  # a pair repeated across the two files is not a duplicate


def items_of(sequences, row):
    return sequences.items[sequences.offsets[row]:sequences.offsets[row + 1]].tolist()


def test_metatl_format_users_of_the_two_files_are_different_users(tmp_path):
    """The two files number their users independently (ids 1.. in each): every consumer
    (sequences, leave-one-out, MetaTL's split) sees one user per (file, id), with that file's
    items only, in time order."""
    rng = np.random.default_rng(0)
    own = {}
    for part, n_users in (("train", 30), ("test_new_user", 20)):
        rows = []
        for user in range(1, n_users + 1):
            items = rng.choice(np.arange(1, 26), rng.integers(4, 10), replace=False)
            times = np.sort(rng.integers(0, 50, len(items)))
            rows += [f"{user}\t{item}\t{t}" for item, t in zip(items, times)]
            own[part, user] = [int(i) for i in items]
        (tmp_path / f"shop_{part}.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset("metatl-format", path=tmp_path)
    assert data.n_users == len(own) == 50 and len(data) == sum(map(len, own.values()))
    sequences = Sequences.from_frame(data.frame, data.n_users)
    for user, raw in enumerate(data.raw_users):
        assert items_of(sequences, user) == list(data.to_internal_items(own[raw]))
        assert set(data.frame.loc[data.frame["user"] == user, "part"]) == {raw[0]}
    split = leave_one_out(data)
    for eval_set in (split.valid, split.test):
        for row in range(len(eval_set)):
            assert not set(items_of(eval_set.targets, row)) & set(items_of(eval_set.history, row))
    by_part = cold_start_by_part(data)
    new_users = np.r_[by_part.valid_users, by_part.test_users]
    assert sorted(data.raw_users[new_users]) == sorted(k for k in own if k[0] == "test_new_user")


def test_metatl_format_needs_exactly_one_pair(tmp_path):
    with pytest.raises(DataError, match="exactly one pair <name>_train.csv"):
        load_dataset("metatl-format", path=metatl_files(tmp_path / "a", "x").parent / "empty")
    folder = metatl_files(metatl_files(tmp_path / "two", "books"), "toys")
    with pytest.raises(DataError, match="found books, toys .*name=..."):
        load_dataset("metatl-format", path=folder)
    assert read_metatl_format(folder, name="toys").name == "toys"
    with pytest.raises(DataError, match="nothing to download: pass path=DIR"):
        load_dataset("metatl-format")


# ---------------------------------------------------------------- failed downloads
def demo_spec(url, sha256=None, name="demo.zip"):
    return type(DATASETS["ml-100k"])("demo", (RemoteFile(url, name, sha256=sha256),),
                                     DATASETS["ml-100k"].reader, "demo")


def test_failed_download_is_one_clear_error_and_leaves_nothing(tmp_path):
    url = (tmp_path / "nowhere" / "demo.zip").as_uri()  # a file:// URL that does not exist
    with pytest.raises(DownloadError) as error:
        download(demo_spec(url), tmp_path / "cache")
    message = str(error.value)
    assert url in message and "--data-path" in message and "COLDREC_DATA" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert not (tmp_path / "cache" / "demo").exists()  # no empty folder left


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    real_fetch = datasets.fetch
    archive = tmp_path / "demo.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("demo/u.data", U_DATA)
    monkeypatch.setattr(datasets, "fetch", lambda url, target: (_ for _ in ()).throw(
        ConnectionResetError("connection reset")))
    cache = tmp_path / "cache"
    (cache / "demo").mkdir(parents=True)
    stale = cache / "demo" / ".demo.zip.abc123.tmp"
    stale.write_bytes(b"half a file from a killed run")
    (cache / "demo" / ".unzip.xyz").mkdir()
    with pytest.raises(DownloadError, match="connection reset"):
        download(demo_spec(archive.as_uri()), cache)
    assert list((cache / "demo").iterdir()) == []  # stale temporaries cleaned, folder kept
    monkeypatch.setattr(datasets, "fetch", real_fetch)
    folder = download(demo_spec(archive.as_uri(), hashlib.sha256(archive.read_bytes()).hexdigest()),
                      cache)
    assert (folder / "u.data").read_bytes() == U_DATA
    assert sorted(p.name for p in (cache / "demo").iterdir()) == ["demo", "demo.zip"]


# ---------------------------------------------------------------- checksums recorded after parsing
def electronics_cache(tmp_path, monkeypatch):
    source = metatl_files(tmp_path / "remote", "electronics")
    spec = DATASETS["electronics"]
    files = tuple(RemoteFile((source / f.name).as_uri(), f.name) for f in spec.files)
    monkeypatch.setitem(DATASETS, "electronics", type(spec)(spec.name, files, spec.reader, ""))
    return source, tmp_path / "cache"


def test_electronics_hash_recorded_only_after_a_successful_parse(tmp_path, monkeypatch):
    source, cache = electronics_cache(tmp_path, monkeypatch)
    good = (source / "electronics_train.csv").read_bytes()
    (source / "electronics_train.csv").write_bytes(good[: len(good) // 2 - 3] + b"\n12\tx")
    with pytest.raises(DataError):
        load_dataset("electronics", cache=cache)  # a truncated first download does not parse
    record = cache / "electronics" / "electronics_train.csv.sha256"
    assert not record.exists()  # ... and its hash is not trusted
    (cache / "electronics" / "electronics_train.csv").unlink()
    (source / "electronics_train.csv").write_bytes(good)
    data = load_dataset("electronics", cache=cache)
    assert data.name == "electronics" and record.exists()
    assert record.read_text().split()[0] == hashlib.sha256(good).hexdigest()
    (cache / "electronics" / "electronics_train.csv").write_bytes(good + b"1\t1\t1\n")
    with pytest.raises(ChecksumError, match=f"delete {record}"):
        load_dataset("electronics", cache=cache)


def test_data_path_one_level_too_high_says_where_the_files_are(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    official_100k(tmp_path / "ml-100k")
    with pytest.raises(DataError, match=f"u.data: expected the file to exist; it is in "
                                        f"{tmp_path / 'ml-100k'}: pass that folder"):
        load_dataset("ml-100k", path=tmp_path)
