"""Readers, preprocessing, windows: on small hand-made files."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recnb.data import (
    build_scene,
    describe,
    eval_inputs,
    from_dataframe,
    load_scene,
    read_atomic,
    read_movielens,
    read_sasrec_txt,
    read_text,
    seen_items,
    synthetic_scene,
    train_windows,
    write_atomic,
)
from recnb.errors import DataError


def write_movielens(folder, rows, titles=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    if titles:
        (folder / "u.item").write_bytes("".join(f"{i}|{t}|01-Jan-1995||x|0\n" for i, t in titles.items()).encode("latin-1"))


def test_movielens_reader_orders_by_time_stably_and_keeps_titles(tmp_path):
    rows = [(1, 10, 5, 300), (1, 11, 3, 100), (1, 12, 4, 100), (2, 10, 1, 5), (2, 12, 2, 6), (2, 13, 2, 7)]
    write_movielens(tmp_path / "ml", rows, {10: "Amélie (2001)", 11: "B", 12: "C", 13: "D"})
    scene = load_scene(tmp_path / "ml")
    raw = [[scene.item_ids[i] for i in s] for s in scene.sequences]
    assert raw == [["11", "12", "10"], ["10", "12", "13"]]  # ties keep file order
    assert scene.titles[scene.item_ids.index("10")] == "Amélie (2001)"  # latin-1 decoded
    assert scene.num_items == 4 and min(min(s) for s in scene.sequences) == 1


def test_sasrec_text_reader_uses_file_order(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("1 5\n1 3\n2 3\n1 9\n2 5\n2 5\n")
    scene = load_scene(f)
    assert [[scene.item_ids[i] for i in s] for s in scene.sequences] == [["5", "3", "9"], ["3", "5", "5"]]
    assert describe(scene)["repeat_ratio"] == pytest.approx(1 / 6, abs=1e-4)


def test_atomic_reader_round_trip_with_titles(tmp_path):
    scene = synthetic_scene(num_users=20, num_items=15, seq_len=8, seed=3)
    write_atomic(scene, tmp_path / "s.inter")
    back = load_scene(tmp_path / "s.inter")
    as_raw = lambda sc: {sc.user_ids[u]: [sc.item_ids[i] for i in s] for u, s in enumerate(sc.sequences)}
    assert as_raw(back) == as_raw(scene)
    assert back.title(1) == scene.title(scene.item_ids.index(back.item_ids[1]))


def test_dataframe_reader():
    df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3], "item": ["a", "b", "c", "c", "b", "a", "a"], "timestamp": [3, 2, 1, 1, 2, 3, 1]})
    scene = from_dataframe(df, name="df")
    assert scene.num_users == 2  # user 3 has fewer than 3 interactions
    assert [scene.item_ids[i] for i in scene.sequences[0]] == ["c", "b", "a"]


@pytest.mark.parametrize("df, needle", [
    (pd.DataFrame({"user": ["a"] * 3 + ["b"] * 3, "item": ["x", None, "z", "x", "y", "z"]}), "row 1: empty item"),
    (pd.DataFrame({"user": ["a"] * 3 + [None] * 3, "item": list("xyzxyz")}), "row 3: empty user"),
    (pd.DataFrame({"user": ["a"] * 3, "item": ["x", " ", "z"]}), "row 1: empty item"),
    (pd.DataFrame({"user": ["a"] * 3, "item": list("xyz"), "timestamp": ["9", "ten", "11"]}), "row 1: timestamp 'ten'"),
    (pd.DataFrame({"user": ["a"] * 3, "item": list("xyz"), "timestamp": [1, np.nan, 3]}), "row 1: timestamp 'nan'"),
    (pd.DataFrame({"user": ["a"] * 3, "item": list("xyz"), "timestamp": [1, np.inf, 3]}), "row 1: timestamp 'inf'"),
    (pd.DataFrame({"user": ["a"] * 3, "item": list("xyz"),
                   "timestamp": pd.to_datetime(["2020-01-01", None, "2020-01-03"])}), "row 1: timestamp 'NaT'"),
])
def test_dataframe_reader_refuses_what_it_cannot_read_naming_the_row(df, needle):
    """A missing id never becomes another item (a -1 code indexes the last one), and a missing
    or unreadable timestamp is never sorted last, where it would become the test item."""
    with pytest.raises(DataError, match=needle):
        from_dataframe(df, name="mine")


def test_dataframe_timestamps_sort_as_numbers_or_times_never_as_text():
    text = from_dataframe(pd.DataFrame({"user": ["a"] * 3, "item": list("xyz"), "timestamp": ["10", "9", "11"]}))
    assert [text.item_ids[i] for i in text.sequences[0]] == ["y", "x", "z"]  # 9 < 10 < 11, not "10" < "11" < "9"
    times = pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02"])
    dated = from_dataframe(pd.DataFrame({"user": ["a"] * 3, "item": list("xyz"), "timestamp": times}))
    assert [dated.item_ids[i] for i in dated.sequences[0]] == ["y", "z", "x"]


def test_empty_token_in_an_atomic_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id:token\n1\ta\n1\t\n1\tc\n")
    with pytest.raises(DataError, match=r"x.inter:3: empty item_id token"):
        read_atomic(path)
    path.write_text("user_id:token\titem_id:token\n1\ta\n \tb\n")
    with pytest.raises(DataError, match=r"x.inter:3: empty user_id token"):
        read_atomic(path)


def test_users_left_out_by_the_filters_are_counted():
    df = pd.DataFrame({"user": ["a"] * 3 + ["b"] * 2 + ["c"] * 4, "item": list("xyzxyxyzw")})
    scene = from_dataframe(df, name="counted")
    assert scene.meta["dropped"] == {"users": 1, "interactions": 2, "min_interactions": 3}
    assert describe(scene)["users_dropped"] == 1
    from recnb.errors import ConfigError
    from recnb.models import build_model
    from recnb.recommend import Recommender

    rec = Recommender(build_model("sasrec", num_items=scene.num_items), scene.id_maps(), scene)
    with pytest.raises(ConfigError, match="1 users of the data were left out when it was read"):
        rec.user_history("b")


def test_malformed_line_names_file_and_line(tmp_path):
    write_movielens(tmp_path / "ml", [(1, 2, 3, 4)])
    with open(tmp_path / "ml" / "u.data", "a") as fh:
        fh.write("1\t2\tfive\t9\n")
    with pytest.raises(DataError, match=r"u\.data:2: rating 'five' is not a number"):
        read_movielens(tmp_path / "ml")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: expected 2 fields"):
        read_sasrec_txt(bad)
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\n1\t2\n1\n")
    with pytest.raises(DataError, match=r"x\.inter:3: expected 2 tab-separated fields"):
        read_atomic(inter)


def test_too_few_interactions_and_unknown_name(tmp_path, monkeypatch):
    f = tmp_path / "few.txt"
    f.write_text("1 1\n1 2\n2 1\n")
    with pytest.raises(DataError, match="few.txt.*at least 3 interactions"):
        load_scene(f)
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_scene("nope")
    monkeypatch.setenv("RECNB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("recnb.data.download_movielens", lambda cache: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DataError, match=r"looked in .*ml-100k.*offline.*RECNB_DATA_DIR"):
        load_scene("ml-100k")


def test_kcore_filter():
    rows = [(u, i, t) for u in range(5) for t, i in enumerate(range(5))] + [(9, 100, 0), (9, 101, 1), (9, 102, 2)]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    scene = build_scene(df, "k", kcore=2)
    assert scene.num_users == 5 and scene.num_items == 5


def test_windows_cover_every_training_target_once():
    scene = synthetic_scene(num_users=30, num_items=40, seq_len=25, seed=1)
    for max_len in (4, 7, 50):
        w = train_windows(scene, max_len)
        assert w.inputs.shape[1] == max_len
        for u, seq in enumerate(scene.sequences):
            mine = w.users == u
            got = sorted(w.targets[mine][w.targets[mine] > 0].tolist())
            assert got == sorted(seq[1:-2].tolist())
        # each target follows its input in the user's sequence
        valid = w.targets > 0
        assert (w.inputs[valid] > 0).all()


def test_eval_inputs_leave_one_out():
    scene = synthetic_scene(num_users=5, num_items=30, seq_len=10, seed=2)
    hist, tgt = eval_inputs(scene, "test", 4)
    for u, seq in enumerate(scene.sequences):
        assert tgt[u] == seq[-1] and hist[u].tolist() == seq[-5:-1].tolist()
    hist, tgt = eval_inputs(scene, "valid", 50)
    assert tgt[0] == scene.sequences[0][-2] and hist[0, -1] == scene.sequences[0][-3]
    assert set(seen_items(scene, "valid")[0]) == set(scene.sequences[0][:-2])


def test_synthetic_scene_is_seeded():
    a, b = synthetic_scene(seed=5), synthetic_scene(seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    stats = describe(a)
    assert set(stats.index) == {"users", "items", "interactions", "seq_len_mean", "seq_len_median", "seq_len_p90",
                                "density", "repeat_ratio", "popularity_gini", "users_dropped"}
    assert all(s.dtype == np.int64 for s in a.sequences)


# ----------------------------------------------------------------------------- text formats, silent misreads
def raw_sequences(scene):
    return {scene.user_ids[u]: [scene.item_ids[i] for i in s] for u, s in enumerate(scene.sequences)}


def test_one_line_per_user_format_is_read_by_path_and_by_name(tmp_path, monkeypatch):
    (tmp_path / "amazon").mkdir()
    f = tmp_path / "amazon" / "Beauty.txt"
    f.write_text("1 1 2 3 4\n2 5 2 6\n10 3 7 1 5 8\n")
    scene = load_scene(f)
    assert raw_sequences(scene) == {"1": ["1", "2", "3", "4"], "2": ["5", "2", "6"], "10": ["3", "7", "1", "5", "8"]}
    assert scene.user_ids == ["1", "2", "10"]  # natural order
    assert scene.item_ids[1:4] == ["1", "2", "3"]  # first appearance in file order
    monkeypatch.setenv("RECNB_DATA_DIR", str(tmp_path))
    assert raw_sequences(load_scene("beauty")) == raw_sequences(scene)
    with pytest.raises(DataError, match=r"looked in .*amazon/Sports_and_Outdoors\.txt"):
        load_scene("sports")


def test_text_with_a_timestamp_column_is_read_by_time(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("1 a 30\n1 b 10\n2 a 5\n1 c 20\n2 b 6\n2 c 2\n")
    assert raw_sequences(load_scene(f)) == {"1": ["b", "c", "a"], "2": ["c", "a", "b"]}


def test_ambiguous_or_mixed_text_is_refused_with_the_way_out(tmp_path):
    f = tmp_path / "three.txt"
    f.write_text("1 5 6\n2 7 8\n3 9 5\n")  # user item timestamp, or user item item?
    with pytest.raises(DataError, match=r"three\.txt: every line has 3 fields.*--data-format \(format= in load_scene\)"):
        load_scene(f)
    df, _ = read_text(f, format="user-items")
    assert df[df.user == "1"]["item"].tolist() == ["5", "6"]
    df, _ = read_text(f, format="user-item-timestamp")
    assert df["timestamp"].tolist() == [6, 8, 5]
    g = tmp_path / "mixed.txt"
    g.write_text("1 5\n1 6 7 8\n1 9\n")  # users repeat and field counts vary: extra columns never dropped
    with pytest.raises(DataError, match=r"mixed\.txt:2: lines have 2 to 4 fields and users repeat"):
        load_scene(g)


def test_header_line_in_text_is_refused_not_read_as_a_user(tmp_path):
    f = tmp_path / "h.txt"
    f.write_text("user_id item_id\n1 5\n1 6\n1 7\n")
    with pytest.raises(DataError, match=r"h\.txt:1: looks like a header"):
        load_scene(f)


def test_non_utf8_bytes_are_refused_with_line_and_offset(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"1 5\n1 6\n1 \xff7\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: not UTF-8 text \(byte 0xff at offset 10\)"):
        load_scene(f)
    inter = tmp_path / "x.inter"
    inter.write_bytes(b"user_id:token\titem_id:token\n1\t\xe92\n")
    with pytest.raises(DataError, match=r"x\.inter:2: not UTF-8"):
        load_scene(inter)
    csv = tmp_path / "x.csv"
    csv.write_bytes(b"user,item\n1,\xe9\n")
    with pytest.raises(DataError, match=r"x\.csv:2: not UTF-8"):
        load_scene(csv)


def test_csv_ids_stay_text_and_bad_cells_are_refused_with_their_line(tmp_path):
    f = tmp_path / "ok.csv"
    f.write_text("user,item,timestamp\n1,9,2\n1,10,1\n1,007,3\n")
    assert raw_sequences(load_scene(f)) == {"1": ["10", "9", "007"]}  # never 9.0, never 7
    f.write_text("user,item,timestamp\n1,9,2\n1,,1\n1,7,3\n")
    with pytest.raises(DataError, match=r"ok\.csv:3: empty item cell"):
        load_scene(f)
    f.write_text("user,item,timestamp\n1,9,2\n1,8,10\n1,7,1\n1,6,x\n")  # one text stamp must not sort the rest as text
    with pytest.raises(DataError, match=r"ok\.csv:5: timestamp 'x' is not a number"):
        load_scene(f)
    f.write_text("user,item\n1,2\n1,3,4,5\n")
    with pytest.raises(DataError, match=r"ok\.csv: malformed CSV"):
        load_scene(f)
    f.write_text("")
    with pytest.raises(DataError, match=r"ok\.csv: empty file"):
        load_scene(f)


def test_pickle_is_never_opened_and_parquet_needs_pyarrow(tmp_path, monkeypatch):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "d.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match=r"d\.pkl: recnb does not read pickle files"):
        load_scene(tmp_path / "d.pkl")
    assert not marker.exists()
    df = pd.DataFrame({"user": ["1"] * 3, "item": ["a", "b", "c"]})
    p = tmp_path / "d.parquet"
    try:
        df.to_parquet(p)
    except ImportError:
        p.write_bytes(b"PAR1")
    else:
        assert raw_sequences(load_scene(p)) == {"1": ["a", "b", "c"]}
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: (_ for _ in ()).throw(ImportError("no engine")))
    with pytest.raises(DataError, match=r"d\.parquet: reading parquet needs pyarrow.*recnb\[parquet\]"):
        load_scene(p)


def test_scene_building_is_vectorised_and_keeps_the_documented_order():
    """Ties keep file order, items by first appearance, users naturally ("2" < "10" < "a")."""
    df = pd.DataFrame({"user": ["10", "a", "2", "10", "a", "2", "10", "a", "2"],
                       "item": ["x", "y", "z", "y", "z", "x", "z", "x", "y"],
                       "timestamp": [5, 1, 5, 5, 2, 6, 7, 3, 0]})
    scene = build_scene(df, "t")
    assert scene.user_ids == ["2", "10", "a"]
    assert scene.item_ids == ["<pad>", "y", "z", "x"]
    assert raw_sequences(scene) == {"2": ["y", "z", "x"], "10": ["x", "y", "z"], "a": ["y", "z", "x"]}
