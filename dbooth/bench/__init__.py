"""Speed and memory of training: ``dbooth bench`` and the library behind it.

``run_bench(BenchRequest(config="shapes-full", ablate=True))`` returns a JSON-ready report with
``steps_per_s``, ``peak_memory_mb``, ``device`` and the settings measured; see BENCHMARKS.md.
"""

from dbooth.bench.configs import CONFIGS, BenchConfig, Variant, ablation, get_config
from dbooth.bench.measure import BenchRequest, measure_generation, measure_training, run_bench

__all__ = ["CONFIGS", "BenchConfig", "BenchRequest", "Variant", "ablation", "get_config", "measure_generation",
           "measure_training", "run_bench"]
