"""HM2-BP itself: the LIF neuron scan, the S-PSP, the hybrid macro/micro gradients.

Never imports `pipelines` or `orchestration`. Algorithm: `../shared/docs/hm2bp-spec.md`.
"""
