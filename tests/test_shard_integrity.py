"""Shards are verified where they are read: by Ray Data's read tasks (training), in one process
(evaluation, boosting ids), and a mismatch is one message naming the shard and the command that
writes it again, through the CLI as a user meets it. On a real local Ray."""

import json

import pytest
from hm2bp.orchestration import cli
from hm2bp.pipelines.dataset import read_shards
from hm2bp.pipelines.errors import BadInputError
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.pipelines.shards import read_split
from hm2bp.tests.small_run import DEMO, convert_small_digits, small_overrides

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, ray_local):
    return convert_small_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def shards(pristine, tmp_path):
    import shutil

    return shutil.copytree(pristine, tmp_path / "shards")


def flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def read_everything(folder):
    return read_shards(str(folder)).take_all()


def test_a_flipped_byte_is_caught_by_the_read_task_naming_the_shard_and_the_repair(shards):
    victim = shards / read_manifest(str(shards)).shards[1].file
    flip(victim, victim.stat().st_size // 2)
    with pytest.raises(BadInputError) as caught:
        read_everything(shards)
    assert f"{victim}: sha256" in str(caught.value)
    assert f"run `hm2bp convert digits --out {shards} --T 50" in str(caught.value)
    with pytest.raises(BadInputError, match=f"{victim}: sha256"):
        read_split(str(shards), read_manifest(str(shards)), "train")


def test_a_deleted_shard_is_named_as_missing(shards):
    victim = shards / read_manifest(str(shards)).shards[0].file
    victim.unlink()
    with pytest.raises(BadInputError, match=f"{victim}: missing .the manifest lists it."):
        read_everything(shards)


def edit_manifest(folder, change):
    path = folder / "manifest.json"
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


def test_a_manifest_that_disagrees_with_its_counts_is_refused(shards):
    edit_manifest(shards, lambda m: m["shards"][0].update(rows=m["shards"][0]["rows"] + 1))
    with pytest.raises(ValueError, match="manifest.json: 401 rows in the shards of split 'train'"):
        read_manifest(str(shards))


def test_a_manifest_that_disagrees_with_its_shards_is_caught(shards):
    def one_more_row(body):
        body["shards"][0]["rows"] += 1
        body["counts"]["train"]["0"] += 1

    edit_manifest(shards, one_more_row)
    with pytest.raises(BadInputError, match="150 rows .expected 151 as manifest.json records"):
        read_everything(shards)


def test_a_shard_of_another_split_is_caught_even_renamed(shards):
    def relabel(body):
        val = next(e for e in body["shards"] if e["split"] == "val")
        renamed = "train-00009-" + val["file"].split("-")[-1]
        (shards / val["file"]).rename(shards / renamed)
        val.update(file=renamed, split="train")
        body["counts"]["train"]["0"] += val["rows"]
        body["counts"]["val"]["0"] -= val["rows"]

    edit_manifest(shards, relabel)
    with pytest.raises(BadInputError, match=r"rows of split \['val'\] .expected only 'train'"):
        read_split(str(shards), read_manifest(str(shards)), "train")


@pytest.mark.parametrize(
    "file", ["../train-00000-0123abcd.parquet", "/etc/passwd", "manifest.json", ".."]
)
def test_manifest_paths_stay_inside_the_shards_folder(shards, file):
    edit_manifest(shards, lambda m: m["shards"][0].update(file=file))
    with pytest.raises(ValueError, match=f"shard file '{file}' of split 'train' .expected a name"):
        read_manifest(str(shards))


def test_training_on_a_damaged_shard_ends_with_one_message_and_no_traceback(shards, capsys):
    victim = shards / read_manifest(str(shards)).shards[0].file
    flip(victim, 100)
    root = shards.parent
    sets = [arg for o in small_overrides(str(shards), root) for arg in ("--set", o)]
    assert cli.main(["train", str(DEMO), *sets, "--set", "scaling.max_failures=0"]) == 1
    err = capsys.readouterr().err
    assert f"hm2bp train: {victim}: sha256" in err and "Traceback" not in err
