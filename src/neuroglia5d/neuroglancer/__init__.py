"""Neuroglancer: precomputed export, skeletons and meshes, local serving, shareable links.

* :func:`~.export.export_neuroglancer` (``neuroglia5d export-neuroglancer``)
* :func:`~.serve.start_server` / ``neuroglia5d serve``
* :func:`~.link.write_links` (``neuroglia5d ng-link``)

Needs the ``ng`` extra (neuroglancer, compressed-segmentation, kimimaro, zmesh).
"""

from __future__ import annotations
