"""Plots, tables and the paper's published numbers (``paper_data/``)."""
