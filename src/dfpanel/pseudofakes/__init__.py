"""Pseudo-fakes: fake traces made on the fly from real samples (see `base.py`)."""
