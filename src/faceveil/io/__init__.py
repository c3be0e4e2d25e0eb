"""Readers and writers: images (Pillow), atomic writes, input discovery."""
