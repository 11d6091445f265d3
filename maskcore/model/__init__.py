"""Decoded project data: geometry value objects, classes, labels, annotations and the item a layout
receives. Frozen, picklable, no I/O; depends on nothing else in maskcore but ``errors``."""
