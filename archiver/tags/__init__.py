"""What players read: ID3 frames, names from templates, timestamped lyrics and LRC."""
