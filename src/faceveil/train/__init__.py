"""Training code (needs the optional ``train`` extra: torch). Nothing here is imported by the core.

Modules that import torch are imported only by the commands that train.
"""
