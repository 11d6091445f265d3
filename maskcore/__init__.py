"""maskcore: labelled image projects to segmentation masks, partitioned across Dask workers."""

__version__ = "0.1.0"
