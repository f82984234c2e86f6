"""Hallucination benchmarks: loaders of the official annotation files, scorers that reproduce
the official scripts, a resumable generation runner and reports (see evals/README.md)."""
