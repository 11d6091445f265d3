"""Conformance suites: one per seam, parametrised over its registry."""
