"""The CPU speed-ups of the quality stage (traced and frozen helper nets, channels_last) change nothing a
user sees: on real photos the signals and the quality score equal the eager modules' to float rounding."""

from __future__ import annotations

import copy

import pytest

from engine.quality.signals import FrozenPerShape


def test_frozen_helper_nets_score_like_the_eager_ones(pipeline, faces_dir):
    fast = pipeline.signals
    if not isinstance(fast.pose, FrozenPerShape):
        pytest.skip("the helper nets are only traced on CPU")
    eager = copy.copy(fast)
    eager.pose, eager.liveness, eager.eye, eager.landmark = fast.pose.module, fast.liveness.module, fast.eye.module, fast.landmark.module
    photos = sorted(faces_dir.glob("*.jpg"))[:6]
    compared = 0
    for path in photos:
        decoded = pipeline.decode(path)
        detections = pipeline.detector.detect_batch([decoded.rgb])[0]
        if not detections:
            continue
        aligned = pipeline.align(decoded.rgb, detections)
        norms = pipeline.embedder.embed(aligned).norms
        for _ in range(2):  # the first call per shape traces, the second runs the frozen net
            quick = fast.extract(decoded.rgb, detections, aligned, norms)
        slow = eager.extract(decoded.rgb, detections, aligned, norms)
        for a, b in zip(quick, slow):
            assert abs(a.yaw - b.yaw) < 0.05 and abs(a.pitch - b.pitch) < 0.05 and abs(a.roll - b.roll) < 0.05
            assert abs(a.real_prob - b.real_prob) < 1e-4 and abs(a.eyes_open - b.eyes_open) < 1e-4
            assert abs(a.eye_landmark_error - b.eye_landmark_error) < 1e-4
            assert abs(pipeline.scorer.score(a).score - pipeline.scorer.score(b).score) < 1e-4
            compared += 1
    assert compared >= 5
    assert any(traced is not None for traced in fast.pose.traced.values()), "the pose net was never traced"
    assert any(traced is not None for traced in fast.landmark.traced.values()), "the landmark net was never traced"


def test_eye_state_measured_only_where_it_can_matter_changes_no_result(pipeline, faces_dir):
    """With a zero eye-state weight the pipeline runs the landmark and eye nets only for faces below trust
    (to name `eyes_closed`); scores and reasons equal those of measuring every face."""
    from evaluation.degrade import DEGRADATIONS

    if pipeline.scorer.reads_eye_state():
        pytest.skip("the committed params weigh the eye state: every face is measured")
    images = []
    for index, path in enumerate(sorted(faces_dir.glob("*.jpg"))[:6]):
        decoded = pipeline.decode(path)
        images.append(decoded)
        box = pipeline.analyze(decoded).face.bbox
        for name in ("occlusion_eyes", "blur_strong"):
            images.append(pipeline.decode(DEGRADATIONS[name](decoded.rgb, [c * decoded.scale for c in box], index)))
    lazy = pipeline.analyze_batch(images)
    pipeline.complete_signals = True
    try:
        complete = pipeline.analyze_batch(images)
    finally:
        pipeline.complete_signals = False
    below_trust = 0
    for quick, full in zip(lazy, complete):
        for a, b in zip(quick.faces, full.faces):
            assert a.quality == pytest.approx(b.quality, abs=1e-9) and a.reasons == b.reasons
            assert b.signals.eyes_open is not None
            if a.quality < pipeline.config.trust_threshold:
                below_trust += 1
                assert a.signals.eyes_open == pytest.approx(b.signals.eyes_open, abs=1e-6)
            else:
                assert a.signals.eyes_open is None
    assert below_trust >= 3
