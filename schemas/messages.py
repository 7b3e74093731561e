"""Every sentence a user reads about a face or a comparison, in English and Simplified Chinese.

The engine speaks in codes (reason codes, decision codes); this module is the one place they become words,
for the API, the CLI, the UI and the webhook alike.
"""

from __future__ import annotations

# code -> (English, Simplified Chinese)
REASON_TEXTS: dict[str, tuple[str, str]] = {
    "no_face": ("No face found: use a photo with one clearly visible face", "未检测到人脸：请使用清晰可见单张人脸的照片"),
    "face_truncated": ("Face cut by the image border: keep the whole face inside the frame", "人脸被画面边缘截断：请让整张脸完整处于画面内"),
    "face_occluded": ("Face partly covered (mask, hand, scarf): uncover nose and mouth", "人脸被部分遮挡（口罩、手、围巾）：请露出口鼻"),
    "face_too_small": ("Face too small: move closer or use a higher resolution", "人脸过小：请靠近镜头或使用更高分辨率"),
    "too_dark": ("Too dark: add light in front of the face", "光线过暗：请在人脸正面补光"),
    "over_exposed": ("Over-exposed: reduce light or avoid backlight and flash glare", "曝光过度：请减弱光线，避免逆光或闪光灯反光"),
    "blurred": ("Blurred: hold the camera still and focus on the face", "图像模糊：请保持相机稳定并对焦人脸"),
    "pose_too_large": ("Pose too large: look straight at the camera", "姿态角度过大：请正对镜头"),
    "eyes_closed": ("Eyes closed: keep both eyes open", "闭眼：请睁开双眼"),
    "suspected_recapture": ("Suspected recapture (screen or print): photograph the person directly", "疑似翻拍（屏幕或打印件）：请直接拍摄本人"),
    "low_detection_confidence": ("Low detection confidence: the face is partly hidden or unclear", "人脸检测置信度低：人脸可能被遮挡或不清晰"),
    "unstable_feature": ("Unstable feature: the face is ambiguous (occluded, noisy or atypical)", "特征不稳定：人脸可能被遮挡、噪声大或不典型"),
    "low_feature_norm": ("Face not recognisable enough: occluded, noisy or heavily processed", "人脸可识别度低：可能被遮挡、噪声大或经过重度处理"),
}

DECISION_TEXTS: dict[str, tuple[str, str]] = {
    "match": ("High-confidence match", "高置信度匹配：同一人"),
    "non_match": ("High-confidence non-match", "高置信度不匹配：不同人"),
    "review": ("Needs manual review", "需要人工复核"),
    "retake_a": ("Image A rejected: retake image A", "图像 A 质量过低：请重拍图像 A"),
    "retake_b": ("Image B rejected: retake image B", "图像 B 质量过低：请重拍图像 B"),
    "unreliable": ("Both images rejected: result unreliable", "两张图像质量均过低：结果不可靠"),
}



def describe(codes: list[str]) -> list[dict[str, str]]:
    """Reason codes as ``{"code", "en", "zh"}`` objects (unknown codes are dropped, never invented)."""
    return [{"code": code, "en": REASON_TEXTS[code][0], "zh": REASON_TEXTS[code][1]} for code in codes if code in REASON_TEXTS]


def decision_message(decision: str) -> dict[str, str]:
    en, zh = DECISION_TEXTS[decision]
    return {"en": en, "zh": zh}
