"""Evaluation: leaks against labels, privacy (face-recognition attacks), detection utility and image quality."""
