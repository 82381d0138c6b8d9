"""Files into the archive: one URL to a verified local temp file (.part, resume, limits, faults),
a task's files fetched and tagged, and the archivist that stores them and writes the manifest."""
