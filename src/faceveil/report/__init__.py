"""Plots and reports drawn from the plain results that ``faceveil.eval`` computes."""
