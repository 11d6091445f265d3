"""Test-only reference oracles (they import supervisely and cv2; the runtime never does).

- `sly_reference.render_reference`: the Supervisely "Export as masks" masks, drawn in memory with
  the real Supervisely SDK the way the export app draws them (minus the app's defects).
- `make_projects.make_all_geometries_project`: a small seeded Supervisely project on disk holding
  every 2-D geometry type.

Facts and citations: docs/reference-notes.md.
"""
