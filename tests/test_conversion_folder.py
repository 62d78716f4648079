"""A conversion folder belongs to one conversion: other options are refused, `--overwrite`
replaces atomically (a commit cut short is finished by the next run), and `convert` never deletes
or overwrites a file that no manifest of its own names. On a real local Ray."""

import pyarrow.fs as pafs
import pytest
from hm2bp.pipelines import destination
from hm2bp.pipelines.convert import convert
from hm2bp.pipelines.dataset import read_shards
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.tests.tiny_readers import TinyImages

pytestmark = pytest.mark.usefixtures("ray_local")


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def sample_ids(folder):
    rows = read_shards(str(folder), columns=["sample_id"]).take_all()
    return sorted(r["sample_id"] for r in rows)


def test_other_options_are_refused_naming_both_and_nothing_changes(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}
    with pytest.raises(BadInputError) as caught:
        convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=4, seed=1, T=50)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: holds a finished conversion of tiny with other options")
    assert "T 400 (this command: 50)" in message and "seed 0 (this command: 1)" in message
    assert "rows_per_shard 5 (this command: 4)" in message and "--overwrite" in message
    assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before


def test_overwrite_replaces_only_when_every_new_shard_is_whole(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    old = sample_ids(tmp_path)
    old_shards = {e.file for e in read_manifest(str(tmp_path)).shards}
    # a replacement that fails part-way leaves the old conversion whole and readable
    with pytest.raises(BadInputError, match="img013"):
        convert(TinyImages(n=20, bad=("img013",)), out=str(tmp_path), T=50, overwrite=True)
    assert read_manifest(str(tmp_path)).T == 400 and sample_ids(tmp_path) == old
    # the finished replacement: the new manifest, its shards, the old-only shards gone
    summary = convert(TinyImages(n=20), out=str(tmp_path), T=50, overwrite=True)
    manifest = read_manifest(str(tmp_path))
    assert manifest.T == 50 and summary.samples == 20 and sample_ids(tmp_path) == old
    assert files(tmp_path) == sorted({"manifest.json"} | {e.file for e in manifest.shards})
    assert old_shards - {e.file for e in manifest.shards}  # there were old-only shards to drop


class _CrashingMoves:
    """A filesystem whose `move` fails after `allowed` calls: a commit cut short."""

    def __init__(self, fs, allowed):
        self.fs, self.allowed = fs, allowed

    def move(self, src, dst):
        if self.allowed == 0:
            raise OSError("crash in the middle of the commit")
        self.allowed -= 1
        self.fs.move(src, dst)

    def __getattr__(self, name):
        return getattr(self.fs, name)


def test_a_commit_cut_short_is_finished_by_the_next_run(tmp_path, monkeypatch):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    real_resolve = destination.resolve

    def crashing(location):
        fs, path = real_resolve(location)
        return _CrashingMoves(fs, allowed=3), path  # manifest aside, two shards moved

    monkeypatch.setattr(destination, "resolve", crashing)
    with pytest.raises(OSError, match="crash in the middle"):
        convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=3, overwrite=True)
    monkeypatch.setattr(destination, "resolve", real_resolve)
    with pytest.raises(FileNotFoundError, match="no manifest"):  # readers see no half state
        read_manifest(str(tmp_path))
    again = convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=3)  # same command
    manifest = read_manifest(str(tmp_path))
    assert again.shards_written == 0 and manifest.rows_per_shard == 3
    assert files(tmp_path) == sorted({"manifest.json"} | {e.file for e in manifest.shards})
    assert len(sample_ids(tmp_path)) == 20


def test_files_that_no_manifest_names_are_never_deleted_or_overwritten(tmp_path):
    foreign = tmp_path / "train-00000.parquet"
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(BadInputError) as caught:
        convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    assert str(caught.value).startswith(f"{foreign}: a file that no hm2bp manifest names")
    assert foreign.read_bytes() == b"someone else's file"
    # beside a finished conversion, a stray file of shard-like name survives every rerun
    folder = tmp_path / "done"
    convert(TinyImages(n=20), out=str(folder), rows_per_shard=5)
    stray = folder / "val-00007.parquet"
    stray.write_bytes(b"mine")
    convert(TinyImages(n=20), out=str(folder), rows_per_shard=5)
    convert(TinyImages(n=20), out=str(folder), rows_per_shard=10, overwrite=True)
    assert stray.read_bytes() == b"mine"


def test_an_unfinished_conversion_with_other_options_is_refused(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    (tmp_path / "manifest.json").unlink()  # as a conversion cut short leaves it: shards only
    with pytest.raises(BadInputError, match="an unfinished conversion with other options: seed"):
        convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5, seed=3)
    assert convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5).shards_reused > 0


def test_uri_destinations_work_the_same(tmp_path):
    uri = (tmp_path / "out").as_uri()
    convert(TinyImages(n=10), out=uri, rows_per_shard=5)
    with pytest.raises(BadInputError, match="other options"):
        convert(TinyImages(n=10), out=uri, rows_per_shard=5, seed=2)
    convert(TinyImages(n=10), out=uri, rows_per_shard=5, seed=2, overwrite=True)
    assert read_manifest(uri).seed == 2
    assert pafs.LocalFileSystem().get_file_info(str(tmp_path / "out" / ".replacing")).type == 0


def test_the_cli_refuses_in_one_message_and_shows_the_traceback_only_when_asked(tmp_path, capsys):
    from hm2bp.orchestration import cli

    out = str(tmp_path / "digits")
    assert cli.main(["convert", "digits", "--out", out, "--T", "20"]) == 0
    capsys.readouterr()
    assert cli.main(["convert", "digits", "--out", out, "--T", "20", "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hm2bp convert: {out}: holds a finished conversion of digits")
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(BadInputError, match="seed 0 .this command: 1."):
        cli.main(["--traceback", "convert", "digits", "--out", out, "--T", "20", "--seed", "1"])
