"""Reason codes a person can act on (codes only: their sentences are in :mod:`schemas.messages`).

Rules read single signals (thresholds documented in docs/quality.md); when a score is low and no rule
fires, the signal that pulled the logit down most is named instead, so every low score has a reason.
"""

from __future__ import annotations

from engine.quality.geometry import is_truncated
from engine.quality.signals import QualitySignals

# Every reason code the engine can give; their sentences (en + zh) live in schemas/messages.py.
REASON_CODES: tuple[str, ...] = (
    "no_face",
    "face_truncated",
    "face_occluded",
    "face_too_small",
    "too_dark",
    "over_exposed",
    "blurred",
    "pose_too_large",
    "eyes_closed",
    "suspected_recapture",
    "low_detection_confidence",
    "unstable_feature",
    "low_feature_norm",
)

# Which reason explains a weak contribution of each fitted term (see engine/quality/scorer.py TERMS).
TERM_REASONS = {
    "feature_norm": "low_feature_norm",
    "small_face": "face_too_small",
    "det_logit": "low_detection_confidence",
    "pose": "pose_too_large",
    "sharpness": "blurred",
    "dark": "too_dark",
    "bright": "over_exposed",
    "eyes_closed": "eyes_closed",
    "instability": "unstable_feature",
    "truncation": "face_truncated",
    "occlusion": "face_occluded",
    "mask": "face_occluded",
}

MIN_FACE_PX = 40
DARK_BRIGHTNESS = 55.0
BRIGHT_BRIGHTNESS = 215.0
MAX_OVEREXPOSED_SHARE = 0.25
MIN_SHARPNESS = 1.5
MAX_YAW = 40.0
MAX_PITCH = 30.0
MIN_EYES_OPEN = 0.2
# The liveness model "calls" a recapture below this P(real); such a face gets the reason and a capped score
# (engine/quality/scorer.py). Recapture is a gate, not a weighed term: NUAA live frames sit at P(real) ≈ 0.999 and
# 98-99 % of prints under 0.02, so any cut between 0.02 and 0.5 catches the same prints. On ordinary
# photos the cut matters: of 1,372 in-the-wild photos the model's own boundary (0.5) flagged 48 (3.5 %),
# mostly plain press photos, while under 0.05 it flags 10 (0.7 %), six of them visibly reproductions
# (a magazine page, a TV frame grab, scanned film stills, a cut-out). docs/quality.md has the numbers.
RECAPTURE_REAL_PROB = 0.05
# fr_liveness needs the face's surroundings: with less than 1.2 face-box sizes of context (a tight face
# crop) it called 67 % of real Yale B faces and 77 % of real RMFD faces recaptures, while with ≥ 1.2 it
# flagged none of 360 live NUAA frames and all prints. Below this its verdict is not used (no reason,
# no penalty): a tight crop cannot be checked for recapture (docs/quality.md).
MIN_LIVENESS_CONTEXT = 1.2
# The eye-state signal is trusted only when fr_landmark's eye centres lie within this share of the face
# box's width of the detector's eye points, the face is whole, large enough and not turned away.
MAX_EYE_LANDMARK_ERROR = 0.08
MIN_DET_SCORE = 0.9
# Lower-face occlusion has two cues. The mask probe (engine/quality/probes.py) reads a covered lower face from the
# recognizer's feature; the rule fires at MASK_PROB. The hand-made cue (see occlusion_level) compares the
# mouth/chin's skin chroma with the cheeks' (typical within ~5 CrCb units); it fires at OCCLUDED_LEVEL.
# A texture cue (a mask is smoother than lips) was dropped: NUAA's live webcam frames have smoother lower
# faces (median log ratio -1.8) than masked faces (-1.1), so it called 39 % of live frames occluded.
CHROMA_TYPICAL, CHROMA_SPREAD = 5.0, 4.0
OCCLUDED_LEVEL = 4.0
MASK_PROB = 0.5
MIN_STABILITY = 0.8


def liveness_trusted(signals: QualitySignals) -> bool:
    return signals.liveness_context >= MIN_LIVENESS_CONTEXT


def suspected_recapture(signals: QualitySignals) -> bool:
    """The liveness model, shown enough of the scene, calls this face a print or screen recapture."""
    return liveness_trusted(signals) and signals.real_prob < RECAPTURE_REAL_PROB


def occlusion_level(signals: QualitySignals) -> float:
    """How far the lower face's colour lies from skin: 0 = like the cheeks, each unit one typical spread beyond."""
    return max(0.0, (signals.lower_face_chroma - CHROMA_TYPICAL) / CHROMA_SPREAD)


def lower_face_covered(signals: QualitySignals) -> bool:
    """A mask, hand or scarf over the mouth: the mask probe says so, or the lower face is not skin-coloured."""
    return (signals.mask_prob is not None and signals.mask_prob >= MASK_PROB) or occlusion_level(signals) >= OCCLUDED_LEVEL


def eye_signal_trusted(signals: QualitySignals) -> bool:
    """Whether the eyes the eye-state model looked at are really the eyes (landmarks agree, face whole)."""
    return (
        signals.eyes_open is not None
        and signals.eye_landmark_error is not None
        and signals.eye_landmark_error <= MAX_EYE_LANDMARK_ERROR
        and not is_truncated(signals.truncation)
        and signals.face_px >= MIN_FACE_PX
        and abs(signals.yaw) <= MAX_YAW
        and abs(signals.pitch) <= MAX_PITCH
    )


def rule_reasons(signals: QualitySignals) -> list[str]:
    """Reason codes whose single-signal rule fires, most actionable first."""
    codes = []
    if suspected_recapture(signals):
        codes.append("suspected_recapture")
    if is_truncated(signals.truncation):
        codes.append("face_truncated")
    if lower_face_covered(signals):
        codes.append("face_occluded")
    if signals.face_px < MIN_FACE_PX:
        codes.append("face_too_small")
    if signals.brightness < DARK_BRIGHTNESS:
        codes.append("too_dark")
    if signals.brightness > BRIGHT_BRIGHTNESS or signals.overexposed > MAX_OVEREXPOSED_SHARE:
        codes.append("over_exposed")
    if signals.sharpness < MIN_SHARPNESS:
        codes.append("blurred")
    if abs(signals.yaw) > MAX_YAW or abs(signals.pitch) > MAX_PITCH:
        codes.append("pose_too_large")
    # Blur and darkness also hide the eyes: only call them closed on an otherwise clear face.
    if eye_signal_trusted(signals) and signals.eyes_open < MIN_EYES_OPEN and not {"blurred", "too_dark"} & set(codes):
        codes.append("eyes_closed")
    if signals.det_score < MIN_DET_SCORE:
        codes.append("low_detection_confidence")
    if signals.stability is not None and signals.stability < MIN_STABILITY:
        codes.append("unstable_feature")
    return codes


def explain(signals: QualitySignals, contributions: dict[str, float]) -> list[str]:
    """Rules first; if none fires, the term that lowered the logit most (a low score always has a reason)."""
    codes = rule_reasons(signals)
    if codes:
        return codes
    term, value = min(contributions.items(), key=lambda item: item[1])
    return [TERM_REASONS.get(term, "low_feature_norm")] if value < 0 else ["low_feature_norm"]
