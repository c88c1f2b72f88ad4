"""Test support: a real ComfyUI (built once into a cache), real media, and their helpers."""
