"""Evaluation: leaks against labels, privacy, utility and quality metrics."""
