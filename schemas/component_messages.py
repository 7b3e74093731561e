"""Names and short explanations of the ISO/IEC 29794-5 component measures, in English and Simplified Chinese.

Kept apart from ``schemas/messages.py`` (reason and decision sentences): these label the component table
of ``frood quality``, the Extract tab and the Monitor. Keys are the measure names of
``engine/quality/components.py`` (OFIQ's spelling where the measure is the standard's).
"""

from __future__ import annotations

# name -> (English, Simplified Chinese)
COMPONENT_TEXTS: dict[str, tuple[str, str]] = {
    "HeadPoseYaw": ("Head pose: yaw (left/right turn)", "头部姿态：偏航角（左右转头）"),
    "HeadPosePitch": ("Head pose: pitch (up/down tilt)", "头部姿态：俯仰角（抬头低头）"),
    "HeadPoseRoll": ("Head pose: roll (in-plane tilt)", "头部姿态：翻滚角（平面内歪头）"),
    "InterEyeDistance": ("Inter-eye distance", "两眼间距"),
    "HeadSize": ("Head size (eye-to-chin over image height)", "头部大小（眼到下巴距离与图像高度之比）"),
    "LeftwardCropOfTheFaceImage": ("Margin to the left border", "左侧留白"),
    "RightwardCropOfTheFaceImage": ("Margin to the right border", "右侧留白"),
    "MarginAboveOfTheFaceImage": ("Margin above the face", "人脸上方留白"),
    "MarginBelowOfTheFaceImage": ("Margin below the face", "人脸下方留白"),
    "SingleFacePresent": ("Single face present", "画面中仅有一张人脸"),
    "EyesOpen": ("Eyes open", "睁眼"),
    "MouthClosed": ("Mouth closed", "闭嘴"),
    "UnderExposurePrevention": ("No under-exposure", "无曝光不足"),
    "OverExposurePrevention": ("No over-exposure", "无曝光过度"),
    "LuminanceMean": ("Luminance mean", "亮度均值"),
    "LuminanceVariance": ("Luminance variance", "亮度方差"),
    "DynamicRange": ("Dynamic range", "动态范围"),
    "IlluminationUniformity": ("Illumination uniformity (left vs right half)", "光照均匀度（左右脸对比）"),
    "Sharpness": ("Sharpness", "清晰度"),
    "NaturalColour": ("Natural colour", "自然肤色"),
    "BackgroundUniformity": ("Background uniformity", "背景均匀度"),
    "MouthOcclusionPrevention": ("Mouth not covered (mask probe)", "口部未遮挡（口罩探测）"),
    "LowerFaceColour": ("Lower face skin-coloured (not covered)", "下半脸为肤色（未遮挡）"),
    "FaceBrightness": ("Face brightness", "人脸亮度"),
    "ClippedHighlights": ("Clipped highlights on the face", "人脸高光溢出"),
    "FaceSize": ("Face size", "人脸尺寸"),
    "FaceTruncation": ("Face inside the frame", "人脸完整处于画面内"),
    "DetectionConfidence": ("Face detection confidence", "人脸检测置信度"),
    "NoRecapture": ("Live capture (not a print or screen)", "现场拍摄（非打印件或屏幕翻拍）"),
    "FeatureStability": ("Feature stability", "特征稳定性"),
}

UNIFIED_TEXT: tuple[str, str] = ("Unified quality score (calibrated OOD score × 100)", "统一质量分（校准后的 OOD 分数 × 100）")


def component_label(name: str, language: str = "en") -> str:
    """The measure's label in ``en`` or ``zh``; an unknown name is returned as it is."""
    texts = COMPONENT_TEXTS.get(name)
    return name if texts is None else texts[1 if language == "zh" else 0]
