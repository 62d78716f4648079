"""Fuzzing every input the CLI reads: nothing corrupt gets in, nothing is lost silently.

Each case copies a small clean input, changes one file of it (flips one bit, truncates it, or
appends 1-64 random bytes), runs the real CLI in this process (`cli.main`, `hm2bp convert` on a
real local Ray, or `hm2bp evaluate`) and sorts the outcome:

- identical: exit 0 and the same results as the clean input's (the shards' rows; or accuracy,
  loss, samples and confusion matrix);
- caught: exit 1 and on stderr one `hm2bp <command>: ...` message naming the changed file, no
  traceback;
- undetectable: exit 0 with other results where the format carries no check that could see the
  change (a pixel of a plain IDX file, an N-MNIST event that keeps the order, a WAV or SPHERE
  sample without `sample_checksum`, a SPHERE `sample_rate` digit; the readers' docstrings say so).
  Counted apart, never hidden, and not a failure;
- failed: anything else. A silent difference where the format does carry a check (gzip, zip,
  IDX sizes, WAV and SPHERE headers and sizes, shards, manifest, checkpoint), another exit code,
  an exception escaping `main`, a traceback, or a message that does not name the file.

Undetectable changes are counted rather than kept out of the draw, so that the table shows how
much damage a format without checksums lets through. `covered_by_*` below states, per format,
which changes its checks must catch; `docs/reliability.md` lists them with the counts.

Cases come from `random.Random` with a fixed seed per input, drawn in sequence, so a failure is
reproduced by its input and case number alone (case `n` is the same whatever the number of cases).
`HM2BP_FUZZ_CASES` sets the cases per input (default 45: 450 in all, about 25 s on 2 cores);
`HM2BP_FUZZ_REPORT=<path>` writes the table of counts (printed under `-s`) as Markdown:

    HM2BP_FUZZ_CASES=225 HM2BP_FUZZ_REPORT=/tmp/fuzz-counts.md .venv/bin/python -m pytest \
        tests/test_fuzz.py -s
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import traceback
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hm2bp.orchestration import cli
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.tests.formats import nmnist_bytes, sphere_bytes, wav_bytes, write_idx

pytestmark = pytest.mark.usefixtures("ray_local")

SEED = 46_2017
CASES = int(os.environ.get("HM2BP_FUZZ_CASES", "45"))
KINDS = ("flip", "truncate", "extend")
OUTCOMES = ("caught", "identical", "undetectable", "failed")


@dataclass(frozen=True)
class Mutation:
    """One change to one file: `flip` bit `bit` of byte `at`, `truncate` to `at` bytes, or
    `extend` with the bytes `extra`."""

    kind: str
    file: str  # relative to the input's root, posix
    at: int
    bit: int = 0
    extra: bytes = b""

    def apply(self, data: bytes) -> bytes:
        if self.kind == "flip":
            return data[: self.at] + bytes([data[self.at] ^ (1 << self.bit)]) + data[self.at + 1 :]
        if self.kind == "truncate":
            return data[: self.at]
        return data + self.extra

    def __str__(self) -> str:
        if self.kind == "flip":
            return f"{self.file}: flip bit {self.bit} of byte {self.at}"
        if self.kind == "truncate":
            return f"{self.file}: truncate to {self.at} bytes"
        return f"{self.file}: extend by {len(self.extra)} bytes {self.extra.hex()}"


def draw(rng: random.Random, kind: str, files: dict[str, bytes]) -> Mutation:
    """A mutation of one of `files` (name -> clean bytes). A position is uniform over the file
    half the time, else log-uniform in its distance from the start or the end, so that a 16-byte
    IDX header, a 44-byte WAV header, SPHERE's header text, a gzip trailer and a zip directory
    are each hit about as often as the bulk of values."""
    name = rng.choice(sorted(files))
    size = len(files[name])
    if kind == "extend":
        return Mutation(kind, name, size, extra=rng.randbytes(rng.randint(1, 64)))
    where = rng.random()
    if where < 0.5:
        at = rng.randrange(size)
    else:
        distance = int(size ** rng.random()) - 1  # 0 <= distance < size, log-uniform
        at = distance if where < 0.75 else size - 1 - distance
    return Mutation(kind, name, at, bit=rng.randrange(8))


def cases(name: str, files: dict[str, bytes]) -> list[Mutation]:
    """`CASES` mutations for input `name`, the kinds in turn, from a seed of its own."""
    rng = random.Random(f"{SEED}:{name}")
    return [draw(rng, KINDS[i % len(KINDS)], files) for i in range(CASES)]


# What each format's own checks must catch: (relative file, mutation, clean bytes) -> bool.
Covered = Callable[[str, Mutation, bytes], bool]


def covered_always(file: str, m: Mutation, data: bytes) -> bool:
    """gzip (CRC-32 and length of every member), zip (CRC-32 per member, directory checks),
    EMNIST's mapping (checked against the split's declared classes), shards and checkpoint (sha256
    in the manifest, digest beside it), the manifest (parsed, typed, checked against its shards)."""
    return True


def covered_by_plain_idx(file: str, m: Mutation, data: bytes) -> bool:
    """IDX carries no checksum: its header (magic, dimensions) and the size they promise are
    checked; a value byte (pixel, label in range) is not."""
    header = 4 + 4 * data[3]
    return m.kind != "flip" or m.at < header


def covered_by_nmnist_bin(file: str, m: Mutation, data: bytes) -> bool:
    """A `.bin` carries no checksum: only a length that is not whole 5-byte events is sure to be
    caught (x, y beyond 34 or time going backwards are caught when a change makes them)."""
    return m.kind != "flip" and len(m.apply(data)) % 5 != 0


def covered_by_wav(file: str, m: Mutation, data: bytes) -> bool:
    """The RIFF header is checked against the file (sizes) and itself (rate, byte rate, block);
    samples carry no checksum."""
    return m.kind != "flip" or m.at < 44


def covered_by_sphere(file: str, m: Mutation, data: bytes) -> bool:
    """The header's sizes, coding and byte order are checked against the file; samples only where
    the header carries `sample_checksum`; a `sample_rate` changed into another rate in range
    cannot be told from a real one (SPHERE states it once)."""
    if m.kind != "flip":
        return True
    rate = re.search(rb"sample_rate -i (\d+)", data)
    if rate.start(1) <= m.at < rate.end(1):
        return False
    return m.at < 1024 or b"sample_checksum" in data[:1024]


@dataclass(frozen=True)
class Input:
    """A clean input: `root` holds its files; `argv(root, out)` is the CLI command for a copy of
    it; `results(case folder, stdout)` what an exit 0 produced; `covered` what the format's checks
    must catch."""

    name: str
    root: Path
    files: tuple[str, ...]
    argv: Callable[[Path, Path], list[str]]
    results: Callable[[Path, str], object]
    covered: Covered
    command: str = "convert"


def convert_argv(reader: str, *extra: str) -> Callable[[Path, Path], list[str]]:
    """`hm2bp convert <reader>` of the folder `root` into `out`, T = 50 steps (fast)."""

    def argv(root: Path, out: Path) -> list[str]:
        return ["convert", reader, "--source", str(root), "--out", str(out), "--T", "50", *extra]

    return argv


# Clean inputs: a few samples of each format, written byte for byte by tests/formats.py.


def _images(n: int, seed: int) -> np.ndarray:
    """`n` sparse 28 x 28 images: about one pixel in five lit, at any brightness."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 28, 28)) < 0.2) * rng.integers(1, 256, (n, 28, 28))


def build_idx(folder: Path, gz: bool) -> list[str]:
    suffix = ".gz" if gz else ""
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", _images(6, 1), gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", [7, 2, 1, 0, 4, 1], gz)
    return [f"t10k-images-idx3-ubyte{suffix}", f"t10k-labels-idx1-ubyte{suffix}"]


def build_emnist(folder: Path) -> list[str]:
    files = []
    for split, n in (("train", 4), ("test", 2)):
        for kind, values in (("images-idx3", _images(n, 2)), ("labels-idx1", [3, 1, 4, 1][:n])):
            name = f"emnist-digits-{split}-{kind}-ubyte.gz"
            write_idx(folder / name, values)
            files.append(name)
    (folder / "emnist-digits-mapping.txt").write_text("".join(f"{i} {48 + i}\n" for i in range(10)))
    return [*files, "emnist-digits-mapping.txt"]


def _events(seed: int, n: int = 30) -> bytes:
    """`n` events in time order within the first 29.4 ms (T = 50 steps of 0.6 ms)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 29_000, n))
    return nmnist_bytes(rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n), t)


NMNIST_FILES = ("Train/3/00001.bin", "Train/8/00002.bin", "Test/3/00003.bin", "Test/8/00004.bin")


def build_nmnist_folder(folder: Path) -> list[str]:
    for seed, name in enumerate(NMNIST_FILES):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(_events(seed))
    return list(NMNIST_FILES)


def build_nmnist_zip(folder: Path) -> list[str]:
    """The official layout: train.zip deflated, test.zip stored (both occur), folders listed."""
    for split, method in (("Train", zipfile.ZIP_DEFLATED), ("Test", zipfile.ZIP_STORED)):
        with zipfile.ZipFile(folder / f"{split.lower()}.zip", "w", method) as archive:
            archive.writestr(f"{split}/", b"")
            for seed, name in enumerate(NMNIST_FILES):
                if name.startswith(split):
                    archive.writestr(name, _events(seed))
    return ["train.zip", "test.zip"]


def _tone(frequency: float, rate: int, seconds: float = 0.08) -> np.ndarray:
    return (8000 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)).astype(
        np.int16
    )


def build_wav(folder: Path) -> list[str]:
    names = ["0_ann_0.wav", "0_bob_0.wav", "1_ann_0.wav", "1_bob_0.wav"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(wav_bytes(_tone(300 + 150 * i, 8000), 8000))
    return names


def build_sphere(folder: Path) -> list[str]:
    """TI-Alpha recordings at 12.5 kHz; two carry `sample_checksum`, as LDC's files do, two not."""
    names = [
        "ti_alpha/train/f1/0af1set0.sph",
        "ti_alpha/train/f1/0bf1set0.sph",
        "ti_alpha/test/f1/0af1s1t0.sph",
        "ti_alpha/test/f1/0bf1s1t0.sph",
    ]
    for i, name in enumerate(names):
        samples = _tone(250 + 200 * i, 12500)
        checksum = int(samples.astype("<i2").view("<u2").sum(dtype=np.uint64) % 2**16)
        extra = (f"sample_checksum -i {checksum}",) if i % 2 else ()
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(sphere_bytes(samples, extra=extra))
    return names


CONVERT_INPUTS: dict[str, tuple[Callable[[Path], list[str]], Callable, Covered]] = {
    "idx-gz": (lambda f: build_idx(f, gz=True), convert_argv("mnist"), covered_always),
    "idx-plain": (lambda f: build_idx(f, gz=False), convert_argv("mnist"), covered_by_plain_idx),
    "emnist-gz": (build_emnist, convert_argv("emnist", "-o", "split=digits"), covered_always),
    "nmnist-bin": (build_nmnist_folder, convert_argv("nmnist"), covered_by_nmnist_bin),
    "nmnist-zip": (build_nmnist_zip, convert_argv("nmnist"), covered_always),
    "wav": (build_wav, convert_argv("wav"), covered_by_wav),
    "sphere": (build_sphere, convert_argv("ti46"), covered_by_sphere),
}


# Outcomes.


@dataclass(frozen=True)
class Run:
    code: int | None  # None: an exception escaped `main`
    out: str
    err: str
    results: object = None  # what an exit 0 produced, to compare with the clean run's


def run_cli(argv: list[str], capsys, results: Callable[[Path, str], object], where: Path) -> Run:
    try:
        code = cli.main(argv)
    except Exception as error:  # anything escaping `main` is a bug, recorded with where it was
        frame = traceback.extract_tb(error.__traceback__)[-1]
        captured = capsys.readouterr()
        text = f"{type(error).__name__}: {error} (at {Path(frame.filename).name}:{frame.lineno})"
        return Run(None, captured.out, text + "\n" + captured.err)
    captured = capsys.readouterr()
    return Run(
        code, captured.out, captured.err, results(where, captured.out) if code == 0 else None
    )


def shard_rows(case_root: Path, stdout: str) -> list[dict]:
    """Every row of a conversion's shards (all columns), sorted by sample id."""
    out = case_root / "out"
    tables = [pq.read_table(out / entry.file) for entry in read_manifest(str(out)).shards]
    return sorted((row for t in tables for row in t.to_pylist()), key=lambda r: r["sample_id"])


def evaluation_numbers(case_root: Path, stdout: str) -> dict:
    """What `hm2bp evaluate --json` found: the numbers, not the paths."""
    summary = json.loads(stdout)  # with --json, stdout is exactly one JSON object
    return {key: summary[key] for key in ("accuracy", "loss", "samples", "split", "confusion")}


def message_problem(err: str, command: str, file: str) -> str | None:
    """Why stderr is not one expected-failure message naming `file` (None when it is). Progress
    bars (tqdm, on the same stream) are passed over."""
    if "Traceback" in err:
        return "a traceback on stderr"
    prefix = f"hm2bp {command}: "
    starts = [m.start() for m in re.finditer(rf"(?m)^{re.escape(prefix)}", err.replace("\r", "\n"))]
    if len(starts) != 1:
        return f"{len(starts)} messages starting {prefix!r}"
    if file not in err[starts[0] :] and Path(file).name not in err[starts[0] :]:
        return "the message does not name the file"
    return None


def judge(run: Run, clean: object, mutation: Mutation, covered: bool, command: str) -> str:
    """The outcome of one case: one of `OUTCOMES`, or `failed: <why>`."""
    if run.code is None:
        return f"failed: exception escaped main: {run.err.splitlines()[0]}"
    if run.code == 0:
        if run.results == clean:
            return "identical"
        return "undetectable" if not covered else "failed: exit 0 with other results"
    if run.code == 1:
        problem = message_problem(run.err, command, mutation.file)
        return "caught" if problem is None else f"failed: exit 1, {problem}: {run.err.strip()!r}"
    return f"failed: exit {run.code}: {run.err.strip()[-300:]!r}"


def run_input(source: Input, where: Path, capsys, mutation: Mutation | None = None) -> Run:
    """The CLI on a copy of `source` in `where/in` (output in `where/out`), `mutation` applied."""
    shutil.copytree(source.root, where / "in")
    if mutation is not None:
        target = where / "in" / mutation.file
        target.write_bytes(mutation.apply(target.read_bytes()))
    return run_cli(source.argv(where / "in", where / "out"), capsys, source.results, where)


def fuzz(source: Input, tmp_path: Path, capsys, tally) -> None:
    """Run every case of `source`, tally the outcomes, and fail with a list of every failed
    case (its number, mutation and outcome), so that one report shows them all."""
    clean = run_input(source, tmp_path / "clean", capsys)
    assert clean.code == 0, f"the clean {source.name} input: {clean.err}"
    files = {name: (source.root / name).read_bytes() for name in source.files}
    failures = []
    for number, mutation in enumerate(cases(source.name, files)):
        run = run_input(source, tmp_path / f"case-{number}", capsys, mutation)
        covered = source.covered(mutation.file, mutation, files[mutation.file])
        outcome = judge(run, clean.results, mutation, covered, source.command)
        tally[source.name, mutation.kind][outcome.partition(":")[0]] += 1
        if outcome.startswith("failed"):
            failures.append(f"{source.name} case {number}: {mutation} -> {outcome}")
        shutil.rmtree(tmp_path / f"case-{number}")
    assert not failures, f"{len(failures)} of {CASES} cases failed:\n" + "\n".join(failures)


# The table of counts, printed (pytest -s) and written to HM2BP_FUZZ_REPORT at the end.


def format_table(tally: dict[tuple[str, str], Counter]) -> str:
    lines = [
        "| input | mutation | tried | " + " | ".join(OUTCOMES) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " |",
    ]
    total: Counter = Counter()
    for (name, kind), counts in tally.items():
        total.update(counts)
        row = [name, kind, str(sum(counts.values())), *(str(counts[o]) for o in OUTCOMES)]
        lines.append("| " + " | ".join(row) + " |")
    row = ["all", str(sum(total.values())), *(str(total[o]) for o in OUTCOMES)]
    lines.append("| **" + row[0] + "** | | **" + "** | **".join(row[1:]) + "** |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tally():
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    yield counts
    table = format_table(counts)
    print(f"\nfuzz cases per input and mutation (HM2BP_FUZZ_CASES={CASES}, seed {SEED}):\n{table}")
    if os.environ.get("HM2BP_FUZZ_REPORT"):
        Path(os.environ["HM2BP_FUZZ_REPORT"]).write_text(table)


# The tests.


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Input]:
    built = {}
    for name, (build, argv, covered) in CONVERT_INPUTS.items():
        root = tmp_path_factory.mktemp(name)
        built[name] = Input(name, root, tuple(build(root)), argv, shard_rows, covered)
    return built


@pytest.mark.parametrize("name", CONVERT_INPUTS)
def test_convert_of_a_mutated_input_is_identical_or_caught(name, inputs, tmp_path, capsys, tally):
    """`hm2bp convert` of every reader's format with one file changed."""
    fuzz(inputs[name], tmp_path, capsys, tally)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_local) -> Path:
    """Digits converted (100 train, 50 val in 2 shards of 25) and one epoch of one local worker:
    `root/shards` and `root/checkpoint_epoch_0001`, both as `hm2bp evaluate` reads them."""
    from hm2bp.orchestration.worker import run_local
    from hm2bp.pipelines.convert import convert
    from hm2bp.tests.small_run import small_config

    root = tmp_path_factory.mktemp("evaluate")
    shards = str(root / "shards")
    convert("digits", out=shards, T=50, split="range:train=0-99,val=100-149", rows_per_shard=25)
    work = tmp_path_factory.mktemp("training")
    run_local(small_config(shards, work, "scaling.workers=1", "train.epochs=1"), shards, "cpu")
    shutil.copytree(
        work / "runs" / "demo" / "checkpoint_epoch_0001", root / "checkpoint_epoch_0001"
    )
    return root


def evaluate_argv(root: Path, out: Path) -> list[str]:
    checkpoint = root / "checkpoint_epoch_0001"
    return ["evaluate", "--checkpoint", str(checkpoint), "--shards", str(root / "shards"), "--json"]


def evaluate_input(name: str, root: Path) -> Input:
    """The files `hm2bp evaluate` reads, by kind: the validation shards (the training shards are
    not read), the manifest, the checkpoint (tensors, record) and their digests."""
    manifest = read_manifest(str(root / "shards"))
    files = {
        "shard": [f"shards/{e.file}" for e in manifest.shards if e.split == "val"],
        "manifest": ["shards/manifest.json"],
        "checkpoint": [
            "checkpoint_epoch_0001/checkpoint.pt",
            "checkpoint_epoch_0001/record.json",
            "checkpoint_epoch_0001/checkpoint.sha256",
        ],
    }[name]
    return Input(
        name, root, tuple(files), evaluate_argv, evaluation_numbers, covered_always, "evaluate"
    )


@pytest.mark.parametrize("name", ["shard", "manifest", "checkpoint"])
def test_evaluate_with_a_mutated_file_is_identical_or_caught(
    name, trained, tmp_path, capsys, tally
):
    """`hm2bp evaluate` with one of the files it reads changed."""
    fuzz(evaluate_input(name, trained), tmp_path, capsys, tally)


# Failures the fuzzing found, as fixed cases: the random cases of a CI run may not draw them.


def after(data: bytes, *anchors: bytes) -> int:
    """The offset just past the last of `anchors`, each searched for after the one before."""
    at = 0
    for anchor in anchors:
        at = data.index(anchor, at) + len(anchor)
    return at


MANIFEST = "shards/manifest.json"
FOUND: dict[str, Callable[[bytes], Mutation]] = {
    # exit 1, but the message is Python's "'utf-8' codec can't decode byte 0xff ..." alone
    "manifest-not-utf8": lambda d: Mutation("extend", MANIFEST, len(d), extra=b"\xff"),
    # "split": "val" of the second val shard becomes "va|": exit 0, 25 of the 50 samples evaluated
    "manifest-split-renamed": lambda d: Mutation(
        "flip", MANIFEST, after(d, b'"file": "val-00001', b'"split": "va'), bit=4
    ),
    # class "0" becomes "1": exit 1 naming the shards folder, not its manifest.json
    "manifest-class-renamed": lambda d: Mutation(
        "flip", MANIFEST, after(d, b'"classes": [', b'"'), bit=0
    ),
}


@pytest.mark.parametrize("name", FOUND)
def test_found_by_fuzzing_is_identical_or_caught(name, trained, tmp_path, capsys):
    source = evaluate_input("manifest", trained)
    clean = run_input(source, tmp_path / "clean", capsys)
    mutation = FOUND[name]((trained / MANIFEST).read_bytes())
    run = run_input(source, tmp_path / "case", capsys, mutation)
    outcome = judge(run, clean.results, mutation, True, source.command)
    assert outcome in ("caught", "identical"), f"{mutation} -> {outcome}"
