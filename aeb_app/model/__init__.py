"""Detector networks, their specs, and shared pre/post-processing."""
