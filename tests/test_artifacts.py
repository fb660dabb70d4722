"""DLLM2Rec interchange files: exact round trips and clear errors on bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from recnb.data import eval_inputs, synthetic_scene, train_windows
from recnb.dllm2rec.artifacts import (
    CONFIDENCE_FILE,
    EMBEDDINGS_FILE,
    RANKS_FILE,
    STATS_FILE,
    TRAIN_FILE,
    VALID_FILE,
    export_scene,
    load_artifacts,
    read_official,
    save_artifacts,
    scene_rows,
    window_rows,
    write_official,
)
from recnb.errors import DataError

torch.set_num_threads(1)
N = 30


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=25, num_items=N, seq_len=16, seed=3)


def fake_teacher(rows: int, top_n: int = 5, d: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ranks = torch.stack([torch.randperm(N, generator=g)[:top_n] + 1 for _ in range(rows)])
    dist = torch.rand(rows, top_n, generator=g).sort(1).values * 3
    return torch.randn(N, d, generator=g), ranks, dist


def test_teacher_files_round_trip_in_official_ids(tmp_path):
    emb, ranks, dist = fake_teacher(12)
    save_artifacts(tmp_path, emb.half(), ranks, dist)  # BIGRec stores fp16; any width d
    first = np.loadtxt(tmp_path / RANKS_FILE)[0]
    assert np.array_equal(first, (ranks[0] - 1).numpy())  # files hold 0-based ids
    assert torch.equal(torch.load(tmp_path / EMBEDDINGS_FILE), emb.half())  # a plain tensor
    art = load_artifacts(tmp_path, num_items=N, num_rows=12)
    assert torch.equal(art.ranks, ranks)  # back in recnb ids
    assert torch.allclose(art.distances, dist, atol=1e-6)
    assert art.embeddings.dtype == torch.float32 and torch.allclose(art.embeddings, emb.half().float())
    assert (art.num_rows, art.top_n) == (12, 5)


def test_official_layout_round_trip(tmp_path, scene):
    data = export_scene(scene)
    write_official(tmp_path, data)
    assert {p.name for p in tmp_path.iterdir()} == {TRAIN_FILE, VALID_FILE, "test_data.csv", STATS_FILE}
    stats = pd.read_pickle(tmp_path / STATS_FILE)
    assert (int(stats["seq_size"][0]), int(stats["item_num"][0])) == (10, N)
    text = (tmp_path / VALID_FILE).read_text().splitlines()
    assert text[0] == "seq,len_seq,next" and text[1].startswith('"[')  # seq as a quoted list
    back = read_official(tmp_path)
    for a, b in ((data.train, back.train), (data.valid, back.valid), (data.test, back.test)):
        assert list(a["seq"]) == list(b["seq"]) and list(a["next"]) == list(b["next"])
        assert list(a["len_seq"]) == list(b["len_seq"])
    assert (back.train["len_seq"] < 10).any()  # short histories exist, and are padded with item_num
    assert all(s[n:] == [N] * (10 - n) for s, n in zip(back.train["seq"], back.train["len_seq"]))
    # the official rows reproduce recnb's leave-one-out: same histories (last 10) and targets
    for split in ("valid", "test"):
        h1, t1 = eval_inputs(scene, split, 10)
        h2, t2 = eval_inputs(back.scene(split), split, 10)
        assert torch.equal(h1, h2) and torch.equal(t1, t2)
    # training rows: official order == recnb's row order over windows
    rows = scene_rows(train_windows(scene, 8), scene)
    off_rows = window_rows(back.windows())
    assert torch.equal(rows.targets, off_rows.targets)


def test_row_order_users_then_time(scene):
    windows = train_windows(scene, 5)  # short windows: several per user
    rows = scene_rows(windows, scene)
    expected = np.concatenate([s[1:-2] for s in scene.sequences])
    assert np.array_equal(rows.targets.numpy(), expected)
    assert torch.equal(windows.targets[rows.window, rows.position], rows.targets)
    values = torch.arange(len(rows) * 2).view(-1, 2)
    assert torch.equal(rows.rows(rows.table(values)), values)


def write_good(tmp_path, rows=6):
    """Good teacher files as another tool writes them: no recnb manifest, so what is checked
    below is the content itself (a manifest would refuse any edit first)."""
    from recnb.dllm2rec.artifacts import MANIFEST_FILE

    emb, ranks, dist = fake_teacher(rows)
    save_artifacts(tmp_path, emb, ranks, dist)
    (tmp_path / MANIFEST_FILE).unlink()
    return tmp_path


@pytest.mark.parametrize(
    "file, content, message",
    [
        (RANKS_FILE, "1 2 3 4 5\n1 2 3 4\n", "numeric matrix"),
        (RANKS_FILE, "1 2 3 4 30\n" * 6, "out of range"),
        (RANKS_FILE, "1 2 3 4 -1\n" * 6, "negative"),
        (RANKS_FILE, "1 2 3 4 5.5\n" * 6, "non-integer"),
        (RANKS_FILE, "1 2 3 4 5\n" * 5, "training rows"),
        (CONFIDENCE_FILE, "0.1 0.2 nan 0.4 0.5\n" * 6, "NaN"),
        (CONFIDENCE_FILE, "0.5 0.4 0.3 0.2 0.1\n" * 6, "not ascending"),
        (CONFIDENCE_FILE, "0.1 0.2 0.3 0.4\n" * 6, "shape"),
        (CONFIDENCE_FILE, "", "empty"),
    ],
)
def test_malformed_teacher_file_is_named(tmp_path, file, content, message):
    write_good(tmp_path)
    (tmp_path / file).write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_artifacts(tmp_path, num_items=N, num_rows=6)
    assert file in str(err.value)


def test_bad_embeddings_are_named(tmp_path):
    write_good(tmp_path)
    with pytest.raises(DataError, match=f"{EMBEDDINGS_FILE}: has 30 rows but the data has 31 items"):
        load_artifacts(tmp_path, num_items=31, ranking=False)
    bad = torch.randn(N, 4)
    bad[3, 1] = float("nan")
    torch.save(bad, tmp_path / EMBEDDINGS_FILE)
    with pytest.raises(DataError, match="NaN or inf, first at item 3"):
        load_artifacts(tmp_path, num_items=N)
    torch.save({"emb": bad}, tmp_path / EMBEDDINGS_FILE)
    with pytest.raises(DataError, match="expected a tensor"):
        load_artifacts(tmp_path, num_items=N)
    (tmp_path / EMBEDDINGS_FILE).write_text("not torch")
    with pytest.raises(DataError, match="not a saved torch tensor"):
        load_artifacts(tmp_path, num_items=N)
    (tmp_path / EMBEDDINGS_FILE).unlink()
    with pytest.raises(DataError, match="no such file"):
        load_artifacts(tmp_path, num_items=N)


def test_malformed_official_data_is_named(tmp_path, scene):
    data = export_scene(scene)
    write_official(tmp_path, data)
    train = pd.read_pickle(tmp_path / TRAIN_FILE)
    broken = train.copy()
    broken.at[0, "seq"] = [0] * 9  # wrong length
    broken.to_pickle(tmp_path / TRAIN_FILE)
    with pytest.raises(DataError, match=f"{TRAIN_FILE}: row 0: seq has 9 ids"):
        read_official(tmp_path)
    broken = train.copy()
    broken.at[1, "next"] = N  # the padding id is not an item
    broken.to_pickle(tmp_path / TRAIN_FILE)
    with pytest.raises(DataError, match="row 1: next 30 out of range"):
        read_official(tmp_path)
    broken = train.copy()
    row = list(broken.at[0, "seq"])
    broken.at[0, "seq"] = row[:-1] + [0] if broken.at[0, "len_seq"] < 10 else row
    broken.at[0, "len_seq"] = min(int(broken.at[0, "len_seq"]), 9)
    broken.to_pickle(tmp_path / TRAIN_FILE)
    with pytest.raises(DataError, match="padding id 30"):
        read_official(tmp_path)
    train.drop(columns=["len_seq"]).to_pickle(tmp_path / TRAIN_FILE)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['len_seq'\]"):
        read_official(tmp_path)
    train.set_index(train.index + 5).to_pickle(tmp_path / TRAIN_FILE)
    with pytest.raises(DataError, match="index labels"):
        read_official(tmp_path)


def test_row_order_holds_with_overlapping_windows(scene):
    import inspect

    if "context" not in inspect.signature(train_windows).parameters:
        pytest.skip("train_windows has no context option")
    windows = train_windows(scene, 6, context=2)
    rows = scene_rows(windows, scene)  # checks every target once, chronologically
    assert torch.equal(windows.targets[rows.window, rows.position], rows.targets)


class _Exploit:
    """A pickle that, once loaded by a plain unpickler, creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_official_pickles_never_run_code(tmp_path, scene):
    import pickle

    data = export_scene(scene)
    write_official(tmp_path, data)
    train = pd.read_pickle(tmp_path / TRAIN_FILE)
    for protocol in (2, 4, 5):  # plain DataFrames of any protocol still read
        (tmp_path / TRAIN_FILE).write_bytes(pickle.dumps(train, protocol=protocol))
        assert len(read_official(tmp_path).train) == len(train)
    marker = tmp_path / "ran"
    (tmp_path / TRAIN_FILE).write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(DataError, match=rf"{TRAIN_FILE}: refused: the pickle asks for (io|builtins)\.open"):
        read_official(tmp_path)
    assert not marker.exists()
    (tmp_path / TRAIN_FILE).write_bytes(pickle.dumps({"seq": [1]}))
    with pytest.raises(DataError, match="holds a dict, expected a DataFrame"):
        read_official(tmp_path)
    (tmp_path / TRAIN_FILE).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a pandas pickle"):
        read_official(tmp_path)


CRAFT = r'''
import pickle, struct, sys
import numpy as np, pandas as pd
mode, path = sys.argv[1], sys.argv[2]
if mode.startswith("offsets"):  # the arrow string offsets of the column labels
    df = pd.DataFrame({"seq": [[1, 2], [3, 4]], "len_seq": [2, 2], "next": [1, 2]})
    raw = pickle.dumps(df, protocol=5)
    good = struct.pack("<4q", 0, 3, 10, 14)
    assert good in raw, "pandas no longer pickles labels as an arrow array"
    bad = struct.pack("<4q", 0, 3, 10, 1 << 40) if mode == "offsets-big" else struct.pack("<4q", 0, -(1 << 40), 10, 14)
    raw = raw.replace(good, bad)
else:  # a block placed outside the frame's columns, built without pandas' own checks
    from pandas._libs.internals import BlockPlacement
    from pandas.core.internals.blocks import new_block
    from pandas.core.internals.managers import BlockManager
    locs = {"placement-far": [0, 1, 10**6], "placement-negative": [0, 1, -5], "placement-twice": [0, 1, 1]}[mode]
    block = new_block(np.array([[1, 2], [3, 4], [5, 6]]), placement=BlockPlacement(np.array(locs)), ndim=2)
    mgr = BlockManager((block,), [pd.Index(["seq", "len_seq", "next"], dtype=object), pd.RangeIndex(2)],
                       verify_integrity=False)
    raw = pickle.dumps(pd.DataFrame._from_mgr(mgr, axes=mgr.axes), protocol=5)
open(path, "wb").write(raw)
'''

READ = r'''
import sys
from recnb.errors import DataError
from recnb.files import read_dataframe_pickle
try:
    df = read_dataframe_pickle(sys.argv[1])
    print(df["seq"].tolist(), df["next"].tolist())
except DataError as exc:
    print(exc)
    sys.exit(3)
'''


@pytest.mark.parametrize("mode", ["offsets-big", "offsets-negative", "placement-far", "placement-negative",
                                  "placement-twice"])
def test_a_crafted_dataframe_pickle_is_one_line_never_a_crash(tmp_path, mode):
    """Arrow string offsets and block placements are unchecked by pandas and pyarrow: such a
    file used to end the process (std::bad_alloc, a segfault). Read in a child process so a
    regression shows as its exit code, not as this test run dying."""
    import subprocess
    import sys

    path = tmp_path / TRAIN_FILE
    try:
        subprocess.run([sys.executable, "-c", CRAFT, mode, str(path)], check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this pandas cannot craft the file: {exc.stderr.decode()[-200:]}")
    proc = subprocess.run([sys.executable, "-c", READ, str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr[-1000:])
    assert proc.stdout.count("\n") == 1 and str(path) in proc.stdout
    assert ("offsets out of range" if mode.startswith("offsets") else "a block placed at column") in proc.stdout


def _older_pandas_pickle(df: pd.DataFrame) -> bytes:
    """``df`` pickled the way pandas 1.x wrote it (the official files' era): NEWOBJ and a
    state with a "0.14.1" entry for the block manager, object-array labels via _new_Index."""
    import copyreg
    import io
    import pickle

    from pandas.core.indexes.base import Index, _new_Index
    from pandas.core.internals.managers import BlockManager

    blocks = [{"values": np.array([df[c].to_numpy(dtype=object if c == "seq" else None)]), "mgr_locs": slice(i, i + 1, 1)}
              for i, c in enumerate(df.columns)]
    cols, rows = np.array(list(df.columns), dtype=object), np.asarray(df.index, dtype=np.int64)

    class Older(pickle.Pickler):
        def reducer_override(self, obj):
            if obj is MGR:
                return copyreg.__newobj__, (BlockManager,), ([], [], [], {"0.14.1": {"axes": AXES, "blocks": blocks}})
            if obj is FRAME:
                return copyreg.__newobj__, (pd.DataFrame,), {"_mgr": MGR, "_typ": "dataframe", "_metadata": []}
            if isinstance(obj, _Axis):
                return _new_Index, (Index, {"data": obj.data, "name": None})
            return NotImplemented

    class _Axis:
        def __init__(self, data):
            self.data = data

    MGR, FRAME = BlockManager.__new__(BlockManager, (), [], False), pd.DataFrame.__new__(pd.DataFrame)
    AXES = [_Axis(cols), _Axis(rows)]
    buf = io.BytesIO()
    Older(buf, protocol=2).dump(FRAME)
    return buf.getvalue()


def test_dataframe_pickles_of_older_pandas_and_string_columns_still_read(tmp_path, scene):
    from recnb.files import read_dataframe_pickle

    data = export_scene(scene)
    write_official(tmp_path, data)
    (tmp_path / TRAIN_FILE).write_bytes(_older_pandas_pickle(data.train))
    back = read_official(tmp_path).train
    assert back["seq"].tolist() == data.train["seq"].tolist() and back["next"].tolist() == data.train["next"].tolist()
    frame = pd.DataFrame({"s": ["a", None, "c"], "x": [0.5, 1.5, np.nan], "b": [True, False, True]}, index=[2, 0, 1])
    frame.to_pickle(tmp_path / "f.df")
    got = read_dataframe_pickle(tmp_path / "f.df")
    assert got.index.tolist() == [2, 0, 1] and got["b"].tolist() == [True, False, True]
    assert got["s"].tolist()[::2] == ["a", "c"] and pd.isna(got["s"].tolist()[1]) and np.isnan(got["x"].iloc[2])


def test_artifacts_carry_a_manifest_checked_on_load(tmp_path, scene):
    """Each file's SHA-256 and the scene's item ids are written beside the artifacts: an edited
    file is refused by name, so are artifacts loaded for another scene of the same size;
    a folder without a manifest (the official release) still loads."""
    from recnb.dllm2rec.artifacts import MANIFEST_FILE
    from recnb.errors import ConfigError

    emb, ranks, dist = fake_teacher(12)
    save_artifacts(tmp_path, emb, ranks, dist, scene=scene, teacher="abc")
    manifest = __import__("json").loads((tmp_path / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {EMBEDDINGS_FILE, RANKS_FILE, CONFIDENCE_FILE} and manifest["teacher"] == "abc"
    assert torch.equal(load_artifacts(tmp_path, num_items=N, scene=scene).ranks, ranks)
    other = synthetic_scene(num_users=25, num_items=N, seq_len=16, seed=3)
    other.item_ids = ["<pad>"] + [f"x{i}" for i in other.item_ids[1:]]  # same size, other items
    with pytest.raises(ConfigError, match="item ids differ"):
        load_artifacts(tmp_path, num_items=N, scene=other)
    text = (tmp_path / RANKS_FILE).read_text()
    first = text.split()[0]
    (tmp_path / RANKS_FILE).write_text(text.replace(first, str((int(first) + 1) % N), 1))  # one id changed, still valid
    with pytest.raises(DataError, match=rf"{RANKS_FILE}: fails its integrity check"):
        load_artifacts(tmp_path, num_items=N)
    (tmp_path / MANIFEST_FILE).unlink()
    assert load_artifacts(tmp_path, num_items=N).manifest == {}  # no manifest: read as the official files are
    (tmp_path / MANIFEST_FILE).write_text("[1]")
    with pytest.raises(DataError, match="not a recnb artifacts manifest"):
        load_artifacts(tmp_path, num_items=N)


def test_non_finite_teacher_scores_are_never_written(tmp_path, scene):
    from recnb.dllm2rec.teachers import make_artifacts
    from recnb.models import build_model

    teacher = build_model("gru4rec", num_items=scene.num_items, max_len=8, hidden_size=8)
    with torch.no_grad():
        next(p for p in teacher.parameters() if p.dim() == 2).view(-1)[5] = float("nan")
    with pytest.raises(DataError, match="NaN or infinite scores"):
        make_artifacts(scene, teacher, 5, tmp_path / "art")
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").iterdir())
    with pytest.raises(DataError, match="refused to write NaN"):
        save_artifacts(tmp_path / "d", distances=torch.tensor([[0.1, float("nan")]]))
    assert not (tmp_path / "d" / CONFIDENCE_FILE).exists()


def test_a_teacher_json_that_is_not_an_object_is_one_line(tmp_path):
    write_good(tmp_path)
    (tmp_path / "teacher.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="teacher.json: expected a JSON object, got a list"):
        load_artifacts(tmp_path, num_items=N)
