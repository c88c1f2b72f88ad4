"""Settings of the Driving Cue Triplet, one frozen dataclass per cue (overrides via dataclasses.replace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import InputError


@dataclass(frozen=True)
class SegmentConfig:
    """How the driver is found and cut out when no external mask is given.

    ``person_index`` picks whom to follow when several people are in view: 0 is the largest of the
    people who move and are seen again over the first frames where enough people are found
    (tracking.py), 1 the next largest, and so on; an index past the people that most sampled frames
    show is refused before the frames are analysed (segment.survey).
    ``onnx_path`` is an optional person segmenter (any ONNX model with one image input and one- or
    two-channel mask outputs), run through ``cv2.dnn`` in place of GrabCut.
    """

    person_index: int = 0
    background_samples: int = 25  # frames sampled across the clip for the median background
    survey_samples: int = 12  # of those, spread over the clip, searched for anyone before the frame pass
    motion_threshold: int = 28  # per-channel grey-level difference that counts as motion
    min_person_fraction: float = 0.002  # smallest person box, as a fraction of the frame area
    hog_threshold: float = 0.5  # SVM score a HOG detection needs
    max_lost: int = 15  # lost frames after which the search around the coasting box is widened
    grabcut_iters: int = 2
    onnx_path: Optional[str] = None
    onnx_size: int = 320  # square input size of the ONNX segmenter

    def __post_init__(self) -> None:
        if self.person_index < 0:
            raise InputError(f"person_index={self.person_index} is negative; use 0 for the largest person")


@dataclass(frozen=True)
class PoseConfig:
    """Pose cue: the masked driver, low-passed in the frequency domain, on a neutral background."""

    cutoff: float = 0.04  # Gaussian low-pass sigma as a fraction of the sampling rate (0.5 = Nyquist)
    greyscale: bool = False
    background: int = 128  # neutral grey behind the driver

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff <= 0.5:
            raise InputError(f"cutoff={self.cutoff} is outside (0, 0.5]; it is a fraction of the sampling "
                             "rate (0.5 keeps everything, 0.05 keeps only the silhouette)")


@dataclass(frozen=True)
class FaceConfig:
    """Face cue: the driver's face, detected, smoothed over time, cropped, zoomed and centred."""

    size: Optional[tuple[int, int]] = None  # (height, width) of the face cue; None = the pose cue's size
    margin: float = 1.6  # crop side = margin x the detected face side
    smooth_frames: float = 3.0  # Gaussian sigma of the temporal box smoothing, in frames
    min_face_fraction: float = 0.03  # smallest face side, as a fraction of the person box height
    # a CenterFace or YuNet .onnx, or MediaPipe's short-range face .tflite, run by cv2.dnn in place of
    # OpenCV's Haar cascade (detectors.detect_faces), for the face cue, the reference's face and the
    # tracker's search for portraits and talking heads alike
    onnx_path: Optional[str] = None

    def __post_init__(self) -> None:
        if self.margin < 1.0:
            raise InputError(f"margin={self.margin} is below 1; the crop must hold the whole face")


@dataclass(frozen=True)
class LocationConfig:
    """Location cue: soft body and face masks; ``grid`` coarsens the body mask to hide its outline."""

    softness: float = 8.0  # Gaussian sigma of the mask edges, in output pixels
    grid: int = 16  # body mask max-pooled to cells of this many pixels (0 = keep the outline)

    def __post_init__(self) -> None:
        if self.softness < 0 or self.grid < 0:
            raise InputError(f"softness={self.softness}, grid={self.grid}: both must be >= 0")


ALIGN_MODES = ("fixed", "in-place", "face", "face-in-place")
ALIGN_HELP = ("fixed: one map for the clip, driver's first body box onto the reference's (StableAnimator; the "
              "driver may walk out of the picture); in-place: the same scale, the driver kept where the "
              "reference stands; face: scaled and placed by the faces (a full-body driver on a portrait), "
              "by the body widths where a face is missing; face-in-place: both")


@dataclass(frozen=True)
class AlignConfig:
    """How the driver is mapped onto the reference (align.py): ``mode`` is one of ALIGN_MODES.

    The scale comes from the body boxes' heights (fixed, in-place) or from the face boxes (face,
    face-in-place); the translation is one for the clip (fixed, face) or follows the driver's body
    box, smoothed over ``smooth_frames`` (Gaussian sigma, frames), so the driver stays where the
    reference stands while quicker moves (a jump, a step) still show.
    """

    mode: str = "fixed"
    smooth_frames: float = 8.0

    def __post_init__(self) -> None:
        if self.mode not in ALIGN_MODES:
            raise InputError(f"align mode {self.mode!r} is unknown; use one of {', '.join(ALIGN_MODES)}")
        if not self.smooth_frames >= 0:
            raise InputError(f"smooth_frames={self.smooth_frames} is negative; give 0 (follow every frame) or more")

    @property
    def framing(self) -> str:
        """What the scale is taken from: "body" (box heights) or "face"."""
        return "face" if self.mode.startswith("face") else "body"

    @property
    def in_place(self) -> bool:
        return self.mode.endswith("in-place")


@dataclass(frozen=True)
class CueConfig:
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    location: LocationConfig = field(default_factory=LocationConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    chunk_frames: int = 16  # frames held in float at once; bounds memory on long videos
    # Long side, in pixels, frames are analysed at (detection, background, segmentation); larger frames
    # are downscaled for it and the masks and boxes brought back, so time and memory stop growing with size
    analysis_side: int = 1024

    def __post_init__(self) -> None:
        if self.analysis_side < 64:
            raise InputError(f"analysis_side={self.analysis_side} is below 64; it is the long side frames are "
                             "analysed at (1024 is the default)")
        if self.chunk_frames < 1:
            raise InputError(f"chunk_frames={self.chunk_frames} is below 1; it is how many frames are processed at "
                             "once (16 is the default)")
