"""Synthetic data built so that each paper's mechanism must help: one module per paper."""
