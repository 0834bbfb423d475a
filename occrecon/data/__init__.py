"""Data: image and landmark I/O, face detection and alignment, occlusion datasets.

Import the submodules directly: ``occrecon.data.io``, ``occrecon.data.landmarks``, ``occrecon.data.align``.
"""
