"""Videos -> face tracks (decode, faces, cache)."""
