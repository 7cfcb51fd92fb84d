"""Computations on result tables (no models): shift tables, complementarity, effective robustness."""
