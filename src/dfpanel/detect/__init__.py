"""Detection of single videos with the panel: discovery, weights folder, pipeline, batch run."""
