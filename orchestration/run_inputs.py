"""The shards a run trains and validates on, as its MLflow input data sets.

Each split is one MLflow data set, `<data set>/<split>` (MLflow keeps one input per name and
digest, so the two splits need two names), tagged with MLflow's context `train` or `val`. Its
digest is the manifest's sha256 (`Manifest.sha256`) cut to MLflow's 36-character limit (the first
32 hex digits); the whole sha256 is in the profile, beside the split's rows and samples per class.
The source is the shards' folder or URI, as MLflow's `local` source or that of the URI's scheme.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hm2bp.pipelines.manifest import Manifest

DIGEST_LENGTH = 32  # MLflow refuses a data set digest over 36 characters


def dataset_inputs(manifest: Manifest, shards: str, splits: Mapping[str, str]) -> list[Any]:
    """One `DatasetInput` per `{context: split}` (e.g. `{"train": "train", "val": "val"}`)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    sha256 = manifest.sha256()
    scheme = shards.split("://", 1)[0] if "://" in shards else "local"
    inputs = []
    for context, split in splits.items():
        counts = manifest.counts.get(split, {})
        profile = {"rows": sum(counts.values()), "counts": counts, "manifest_sha256": sha256}
        dataset = Dataset(
            name=f"{manifest.dataset}/{split}",
            digest=sha256[:DIGEST_LENGTH],
            source_type=scheme,
            source=json.dumps({"uri": shards}),
            profile=json.dumps(profile),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    return inputs
