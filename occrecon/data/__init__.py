"""Data: image and landmark I/O, face detection and alignment, occluders, synthetic/real occlusion samples and the
dataset format.

Import the submodules directly: ``occrecon.data.io``, ``occrecon.data.landmarks``, ``occrecon.data.align``,
``occrecon.data.dataset``, ``occrecon.data.synth``.
"""
