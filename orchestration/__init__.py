"""Ray Train workers, Ray Tune sweeps, MLflow tracking, the `hm2bp` CLI and job entry points.

The only room that imports the other two: `orchestration -> pipelines`, `orchestration -> kernels`.
"""
