"""Batched scoring of samples and the one video-level aggregation."""
