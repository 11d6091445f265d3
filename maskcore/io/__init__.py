"""Storage: fsspec filesystems and credential redaction, safe zip reading, sinks (where outputs
are written, whole or not at all) and archive packing. Depends on model, kernel and codec only."""
