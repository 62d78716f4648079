"""Where shards live: a local path or any pyarrow filesystem URI, written atomically.

A cluster needs shared storage, so a destination is either a local path or a URI that
`pyarrow.fs.FileSystem.from_uri` understands (`file:///...`, `s3://bucket/prefix`, ...). Every file
is written under a temporary name in its destination folder and renamed when complete, so a crash
never leaves a half file that looks whole; the temporary names are recognisable, so a rerun removes
the leftovers.
"""

from __future__ import annotations

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


def check_shared(paths: Mapping[str, str | None]) -> None:
    """Refuse local paths that some node of the Ray cluster cannot see.

    A URI (`s3://...`) is storage every node reaches. A local path is shared only where every node
    mounts the same file system there, which is checked, not assumed: a file of random content is
    written in the path's folder (for a file, its folder; made if missing) and a task on each alive
    node reads it back. A single-node cluster sees what the driver sees. `paths` maps what the
    user set (`run.storage_path`, `--out`) to its value; None is skipped. Needs Ray running.
    """
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return
    for setting, path in paths.items():
        text = None if path is None else os.fspath(path)
        if text is None or ("://" in text and not text.startswith("file://")):
            continue
        folder = _local_folder(text)
        blind = _nodes_blind_to(folder, nodes)
        if blind:
            raise ValueError(
                f"{setting} {path}: a local path that {len(blind)} of the cluster's "
                f"{len(nodes)} nodes cannot see ({', '.join(blind)}); on a cluster of several "
                "nodes, shards and checkpoints must be on storage every node sees (expected a "
                "URI such as s3://bucket/prefix, or a shared file system mounted at the same path "
                "on every node)"
            )


def _local_folder(path: str) -> str:
    path = path.removeprefix("file://")
    return os.path.dirname(path) if os.path.isfile(path) else path


def _nodes_blind_to(folder: str, nodes: list[dict]) -> list[str]:
    """The nodes (id prefix and address) on which a file written in `folder` here is absent."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    os.makedirs(folder, exist_ok=True)
    token = uuid.uuid4().hex
    marker = os.path.join(folder, f".visible.tmp-{token}")  # `remove_temporaries` knows the name
    with open(marker, "w") as out:
        out.write(token)
    try:
        read = ray.remote(num_cpus=0, max_retries=0)(_read_text)
        answers = {
            node["NodeID"]: read.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(marker)
            for node in nodes
        }
        ready, _ = ray.wait(list(answers.values()), num_returns=len(answers), timeout=60)
        blind = []
        for node in nodes:
            ref = answers[node["NodeID"]]
            if ref not in ready or ray.get(ref) != token:
                blind.append(f"node {node['NodeID'][:12]} at {node['NodeManagerAddress']}")
        return blind
    finally:
        os.remove(marker)


def _read_text(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return None
