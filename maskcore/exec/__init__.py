"""Execution: planning, filtering, the per-partition task, incremental state, the run and the
cluster it runs on. The only layer that imports dask."""
