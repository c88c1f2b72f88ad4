"""Driving Cue Triplet: pose, face and location cues cut from a driving video's pixels."""
