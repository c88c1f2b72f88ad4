"""Driving Cue Triplet: pose, face and location cues cut from a driving video's pixels.

Modules: frames (re-readable uint8 streams), detectors (built-in OpenCV detectors, optional ONNX),
segment (follow one person, cut them out), lowpass (pose cue filter), face (face cue), align
(driver-to-reference map), location (soft masks), reference (the reference's boxes), triplet (the
two passes and the CueTriplet value), replace (the person mask grown and the frames with the person
blacked out, for a character-replacement model such as Wan 2.2 Animate), cli (``extract``).

Importing this package loads nothing heavy; see ``triplet.build_triplet`` for the one-call API.
"""
