"""A conversion folder belongs to one conversion: other options are refused, `--overwrite`
replaces it with one atomic switch of the manifest (a switch cut short is finished by the next
run), and `convert` never deletes or overwrites a file that no manifest of its own names. On a
real local Ray."""

import json

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


def test_overwrite_switches_only_when_every_new_shard_is_whole(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    old = sample_ids(tmp_path)
    old_shards = {e.file for e in read_manifest(str(tmp_path)).shards}
    # a replacement that fails part-way leaves the old conversion whole and readable
    with pytest.raises(BadInputError, match="img013"):
        convert(TinyImages(n=20, bad=("img013",)), out=str(tmp_path), T=50, overwrite=True)
    assert read_manifest(str(tmp_path)).T == 400 and sample_ids(tmp_path) == old
    assert old_shards <= set(files(tmp_path))
    # the finished replacement: the new manifest and its shards, the old conversion's files gone
    summary = convert(TinyImages(n=20), out=str(tmp_path), T=50, overwrite=True)
    manifest = read_manifest(str(tmp_path))
    assert manifest.T == 50 and summary.samples == 20 and sample_ids(tmp_path) == old
    assert files(tmp_path) == sorted({"manifest.json"} | {e.file for e in manifest.shards})
    assert not old_shards & {e.file for e in manifest.shards}  # written beside, never over


def test_a_switch_cut_short_is_finished_by_the_next_run(tmp_path, monkeypatch):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    old_shards = {e.file for e in read_manifest(str(tmp_path)).shards}
    real = destination._delete_replaced
    calls = []

    def crash_after_the_switch(fs, folder):
        calls.append(folder)
        if len(calls) == 2:  # the first call is the one of `prepare`
            raise OSError("crash between the switch and the deletions")
        real(fs, folder)

    monkeypatch.setattr(destination, "_delete_replaced", crash_after_the_switch)
    with pytest.raises(OSError, match="crash between"):
        convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=3, overwrite=True)
    monkeypatch.setattr(destination, "_delete_replaced", real)
    manifest = read_manifest(str(tmp_path))  # the new conversion, whole and readable
    assert manifest.rows_per_shard == 3 and len(sample_ids(tmp_path)) == 20
    assert old_shards <= set(files(tmp_path)) and "replaced.json" in files(tmp_path)
    again = convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=3)  # same command
    assert again.shards_written == 0
    assert files(tmp_path) == sorted({"manifest.json"} | {e.file for e in manifest.shards})


def test_files_that_no_manifest_names_are_never_deleted_or_overwritten(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path / "elsewhere"), rows_per_shard=5)
    planned = read_manifest(str(tmp_path / "elsewhere")).shards[0].file  # the same plan here
    foreign = tmp_path / "here" / planned
    foreign.parent.mkdir()
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(BadInputError) as caught:
        convert(TinyImages(n=20), out=str(tmp_path / "here"), rows_per_shard=5)
    assert str(caught.value).startswith(f"{foreign}: a file that is not an hm2bp shard")
    assert foreign.read_bytes() == b"someone else's file"
    # beside a finished conversion, a stray file survives every rerun and replacement
    folder = tmp_path / "done"
    convert(TinyImages(n=20), out=str(folder), rows_per_shard=5)
    stray = folder / "val-00007.parquet"
    stray.write_bytes(b"mine")
    convert(TinyImages(n=20), out=str(folder), rows_per_shard=5)
    convert(TinyImages(n=20), out=str(folder), rows_per_shard=10, overwrite=True)
    assert stray.read_bytes() == b"mine"


def test_an_unfinished_conversion_is_left_alone_and_written_beside(tmp_path):
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5)
    abandoned = {e.file for e in read_manifest(str(tmp_path)).shards}
    (tmp_path / "manifest.json").unlink()  # as a conversion cut short leaves it: shards only
    convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5, seed=3)
    manifest = read_manifest(str(tmp_path))
    assert manifest.seed == 3 and not abandoned & {e.file for e in manifest.shards}
    assert abandoned <= set(files(tmp_path))  # no manifest of its own names them: kept
    assert convert(TinyImages(n=20), out=str(tmp_path), rows_per_shard=5, seed=3).shards_reused


def test_a_manifest_of_another_format_is_replaced_only_with_overwrite(tmp_path):
    convert(TinyImages(n=10), out=str(tmp_path), rows_per_shard=5)
    body = json.loads((tmp_path / "manifest.json").read_text())
    old_shards = {e["file"] for e in body["shards"]}
    body["format"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(BadInputError, match="format 1 .expected 2.*pass --overwrite"):
        convert(TinyImages(n=10), out=str(tmp_path), rows_per_shard=5)
    convert(TinyImages(n=10), out=str(tmp_path), rows_per_shard=4, overwrite=True)
    assert not old_shards & set(files(tmp_path))


def test_uri_destinations_work_the_same(tmp_path):
    uri = (tmp_path / "out").as_uri()
    convert(TinyImages(n=10), out=uri, rows_per_shard=5)
    with pytest.raises(BadInputError, match="other options"):
        convert(TinyImages(n=10), out=uri, rows_per_shard=5, seed=2)
    convert(TinyImages(n=10), out=uri, rows_per_shard=5, seed=2, overwrite=True)
    assert read_manifest(uri).seed == 2
    assert files(tmp_path / "out") == sorted(
        {"manifest.json"} | {e.file for e in read_manifest(uri).shards}
    )


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


def test_convert_json_prints_exactly_one_object_on_stdout(tmp_path, capsys):
    from hm2bp.orchestration import cli

    out = str(tmp_path / "digits")
    assert cli.main(["convert", "digits", "--out", out, "--T", "20", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the whole of stdout: one object, nothing else
    assert summary["samples"] == 1797 and summary["out"] == out
    assert summary["shards_written"] + summary["shards_reused"] == len(read_manifest(out).shards)
    assert f"digits -> {out}" in captured.err
