"""Evaluation: privacy (face-recognition attacks), detection utility and image quality."""
