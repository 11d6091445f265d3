"""The pure numpy kernel: polygon fills, lines, discs, the COCO rule, patches, drawing geometry
into patches, composing patches into masks, palettes and the area resize. No I/O, no dask."""
