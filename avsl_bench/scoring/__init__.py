"""Scoring: per-sample quantities, metrics, bootstrap confidence intervals, submissions and results."""
