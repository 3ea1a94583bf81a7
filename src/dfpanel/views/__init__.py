"""What each specialist sees, cut from a face-track entry (cache or memory)."""
