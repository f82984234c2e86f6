"""The benchmark registry: name -> Benchmark (loader + official scorer; see base.py).

Adding a benchmark: a module here with `load`, `judge`, `aggregate` and a `BENCHMARK`
record, its name in REGISTRY, and a YAML in configs/eval/.
"""

from . import amber, chair, eventhallusion, pope, synthetic, tempcompass, videohallucer, vidhal, vidhalluc
from .base import Benchmark, BenchmarkFilesMissing, Item, Judgement, Loaded

REGISTRY: dict[str, Benchmark] = {
    m.BENCHMARK.name: m.BENCHMARK
    for m in (pope, chair, amber, videohallucer, eventhallusion, vidhal, tempcompass, vidhalluc, synthetic)
}

__all__ = ["REGISTRY", "Benchmark", "BenchmarkFilesMissing", "Item", "Judgement", "Loaded"]
