"""Raw data sets to Parquet shards of spike events, fanned out as Ray tasks.

Never imports `kernels` or `orchestration`; the contract with the rest is the shard format
(`docs/shards.md`).
"""
