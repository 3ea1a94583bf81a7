"""Pseudo-fakes: fake traces made on the fly from real samples (see `base.py`).

Importing the package registers the built-in generators: `self_blend` (BG, RR), `recompress` (CM),
`temporal_blend` (TM) and `audio_desync` (AV).
"""

from dfpanel.pseudofakes import audio, blend, recompress, temporal  # noqa: F401  (registration)
