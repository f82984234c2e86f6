"""Pipelines: one YAML runs pair generation, training stages, curricula, rounds and evals in
order (`mmalign run CONFIG`). Imports mmalign, perturb and evals; none of them imports this."""
