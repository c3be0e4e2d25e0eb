"""Plots and reports drawn from the plain results that eval/ computes."""
