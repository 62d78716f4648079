"""Where shards live: a local path or any pyarrow filesystem URI, written atomically.

A cluster needs shared storage, so a destination is either a local path or a URI that
`pyarrow.fs.FileSystem.from_uri` understands (`file:///...`, `s3://bucket/prefix`, ...). Every file
is written under a temporary name in its destination folder and renamed when complete, so a crash
never leaves a half file that looks whole; the temporary names are recognisable, so a rerun removes
the leftovers.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping

import pyarrow.fs as pafs

_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")


def absolute(destination: str | os.PathLike) -> str:
    """A URI as it is, a local path made absolute: Ray tasks do not share the driver's cwd."""
    text = os.fspath(destination)
    return text if "://" in text else os.path.abspath(text)


def resolve(destination: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a URI."""
    text = os.fspath(destination)
    if "://" not in text:
        return pafs.LocalFileSystem(), os.path.abspath(text)
    fs, path = pafs.FileSystem.from_uri(text)
    return fs, path.rstrip("/")


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary name in the same folder, then rename."""
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(temp) as stream:
        stream.write(data)
    fs.move(temp, path)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def file_names(fs: pafs.FileSystem, folder: str) -> list[str]:
    """Names of the files directly in `folder` (none when it does not exist)."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return [info.base_name for info in infos if info.type == pafs.FileType.File]


def remove_temporaries(fs: pafs.FileSystem, folder: str) -> None:
    """Delete the temporary files an interrupted run left behind."""
    for name in file_names(fs, folder):
        if _TEMP.match(name):
            fs.delete_file(f"{folder}/{name}")


def check_shared(*, inputs: Mapping[str, str | None], outputs: Mapping[str, str | None]) -> None:
    """Refuse local paths that some node of the Ray cluster cannot see.

    A URI (`s3://...`) is storage every node reaches. A local path is shared only where every node
    mounts the same file system there, which is checked, not assumed, by a zero-CPU task on each
    alive node. An input (`--source`, `data.shards`: read only) is seen when a file in it has the
    driver's size and sha256 of its first MiB (a source may be gigabytes, read by every node, and
    what is at stake is where the path leads, not the bytes: readers check those). An output
    (`--out`, `run.storage_path`) is seen when a file of random content that the driver writes
    in it (the folder made if missing) reads back. A single-node cluster sees what the driver
    sees; nodes that join later (an autoscaler's) are not checked.
    The mappings go from what the user set to its value; None is skipped. Needs Ray running.
    """
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return
    for setting, path, written in [
        *((k, v, False) for k, v in inputs.items()),
        *((k, v, True) for k, v in outputs.items()),
    ]:
        text = None if path is None else os.fspath(path)
        if text is None or ("://" in text and not text.startswith("file://")):
            continue
        local = text.removeprefix("file://")
        if written:
            os.makedirs(local, exist_ok=True)
            probe = os.path.join(local, f".visible.tmp-{uuid.uuid4().hex}")  # see _TEMP
            with open(probe, "w") as out:
                out.write(probe)
        else:
            probe = _first_file(local)
            if probe is None:
                continue  # nothing to read: the command's own check names the missing input
        try:
            blind = _nodes_blind_to(probe, _fingerprint(probe), nodes)
        finally:
            if written:
                os.remove(probe)
        if blind:
            raise ValueError(
                f"{setting} {path}: a local path that {len(blind)} of the cluster's "
                f"{len(nodes)} nodes cannot see ({', '.join(blind)}); on a cluster of several "
                "nodes, shards and checkpoints must be on storage every node sees (expected a "
                "URI such as s3://bucket/prefix, or a shared file system mounted at the same path "
                "on every node)"
            )


def _first_file(path: str) -> str | None:
    """`path` if it is a file, else the first file under it in sorted order (None: none)."""
    if os.path.isfile(path):
        return path
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        if files:
            return os.path.join(folder, sorted(files)[0])
    return None


_PROBE_BYTES = 1 << 20


def _fingerprint(path: str) -> str | None:
    """`<size>:<sha256 of the first MiB>` of a file, None where it cannot be read."""
    try:
        with open(path, "rb") as file:
            head = file.read(_PROBE_BYTES)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return None
    return f"{size}:{hashlib.sha256(head).hexdigest()}"


def _nodes_blind_to(path: str, digest: str | None, nodes: list[dict]) -> list[str]:
    """The nodes (id prefix, address, why) on which `path` does not read back as `digest`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    read = ray.remote(num_cpus=0, max_retries=0)(_fingerprint)
    answers = [
        read.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(path)
        for node in nodes
    ]
    ready, _ = ray.wait(answers, num_returns=len(answers), timeout=60)
    blind = []
    for node, answer in zip(nodes, answers, strict=True):
        where = f"node {node['NodeID'][:12]} at {node['NodeManagerAddress']}"
        if answer not in ready:
            blind.append(f"{where}: no answer within 60 s")
            continue
        try:
            seen = ray.get(answer)
        except ray.exceptions.RayError as err:
            blind.append(f"{where}: its check failed, {type(err).__name__}")
            continue
        if seen != digest:
            blind.append(where if seen is None else f"{where}: other contents")
    return blind
