"""UI text in English and Simplified Chinese: component labels (translated by the browser) and server-side messages.

Labels go through ``gr.I18n`` and follow the browser's locale. What a handler writes (results, reasons,
errors, chart titles) is built on the server, so it follows the request's ``Accept-Language`` header,
which the browser sets from the same locale: one language per line, never both.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from errors import FroodError
from schemas.messages import DECISION_TEXTS, REASON_TEXTS

Locale = str  # "en" or "zh"

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Face recognition with an out-of-distribution quality score",
        "components_title": "Quality components (ISO/IEC 29794-5), failing first",
        "compare": "Compare",
        "extract": "Extract",
        "image_a": "Image A",
        "image_b": "Image B",
        "one_image": "Image",
        "run_compare": "Compare",
        "run_extract": "Extract feature",
        "result": "Result",
        "crops": "Aligned 112×112 faces",
        "json": "Feature JSON",
        "downloads": "Downloads (.json, .npy)",
        "thorough": "Thorough quality (feature stability, slower)",
        "heatmap": "Quality heatmap (where covering the face costs the most quality)",
        "source": "Source (camera, device or site id; optional)",
        "monitor": "Monitor",
        "window": "Window",
        "source_filter": "Source",
        "refresh": "Refresh",
        "hour": "Hour for low-quality thumbnails",
        "thumbs": "Low-quality images in that hour",
        "per_source": "Per source",
        "gallery": "Gallery",
        "gallery_pick": "Gallery",
        "gallery_name": "New gallery name",
        "gallery_type": "Index type",
        "gallery_create": "Create gallery",
        "gallery_reload": "Reload list",
        "enrol_label": "Person's name (label)",
        "enrol_files": "Photos of this person",
        "enrol_button": "Enrol",
        "identities": "Enrolled identities",
        "remove_pick": "Identity to remove",
        "remove_button": "Remove identity",
        "identify_image": "Photo to identify (a group photo works)",
        "identify_button": "Identify",
        "identified": "Faces found",
        "gallery_type_info": (
            "Flat: exact search, best up to ~100,000 faces. IVF: clustered, faster on large galleries, slightly approximate. "
            "HNSW32: graph search, fastest on large galleries, uses more memory."
        ),
        "gallery_rename_to": "New name for this gallery",
        "gallery_rename": "Rename gallery",
        "gallery_delete": "Delete gallery",
        "photo_pick": "Photo to remove (identity · #id)",
        "photo_remove": "Remove photo",
        "confirm_yes": "Yes, remove",
        "confirm_no": "Cancel",
        "face_used": "Faces in the photo (blue: the face used)",
        "export_csv": "Export the period as CSV",
        "csv_files": "CSV (per-source table, events)",
        "webhook_test": "Send a test event to the webhook",
        "manage": "Manage the gallery",
        "tab_title": "Face recognition",
        "failing_components": "Components that fail most (per source and hour of day)",
        "csv_files_components": "CSV (per-source table, failing components, events)",
    },
    "zh-CN": {
        "title": "人脸识别与分布外（OOD）质量评分",
        "components_title": "质量分项（ISO/IEC 29794-5），未达标项在前",
        "compare": "比对",
        "extract": "提取",
        "image_a": "图像 A",
        "image_b": "图像 B",
        "one_image": "图像",
        "run_compare": "开始比对",
        "run_extract": "提取特征",
        "result": "结果",
        "crops": "对齐后的 112×112 人脸",
        "json": "特征 JSON",
        "downloads": "下载（.json、.npy）",
        "thorough": "精细质量评估（特征稳定性，较慢）",
        "heatmap": "质量热力图（遮挡后质量下降最多的区域）",
        "source": "来源（摄像头、设备或站点编号，可选）",
        "monitor": "监控",
        "window": "时间范围",
        "source_filter": "来源",
        "refresh": "刷新",
        "hour": "查看低质量缩略图的小时",
        "thumbs": "该小时的低质量图像",
        "per_source": "按来源统计",
        "gallery": "人脸库",
        "gallery_pick": "人脸库",
        "gallery_name": "新人脸库名称",
        "gallery_type": "索引类型",
        "gallery_create": "创建人脸库",
        "gallery_reload": "刷新列表",
        "enrol_label": "姓名（标签）",
        "enrol_files": "此人的照片",
        "enrol_button": "录入",
        "identities": "已录入的身份",
        "remove_pick": "要删除的身份",
        "remove_button": "删除身份",
        "identify_image": "待识别照片（可为合影）",
        "identify_button": "识别",
        "identified": "检测到的人脸",
        "gallery_type_info": "Flat：精确检索，适合约 10 万张人脸以内。IVF：聚类检索，大库更快，结果略有近似。HNSW32：图检索，大库最快，占用内存更多。",
        "gallery_rename_to": "人脸库的新名称",
        "gallery_rename": "重命名人脸库",
        "gallery_delete": "删除人脸库",
        "photo_pick": "要删除的照片（身份 · 编号）",
        "photo_remove": "删除照片",
        "confirm_yes": "确认删除",
        "confirm_no": "取消",
        "face_used": "照片中的人脸（蓝框：所用人脸）",
        "export_csv": "导出该时段的 CSV",
        "csv_files": "CSV（按来源统计、事件）",
        "webhook_test": "向回调地址发送测试事件",
        "manage": "管理人脸库",
        "tab_title": "人脸识别",
        "failing_components": "最常未达标的质量分项（按来源和时段）",
        "csv_files_components": "CSV（按来源统计、未达标分项、事件）",
    },
}
LABELS["zh"] = LABELS["zh-CN"]

I18N = gr.I18n(**LABELS)


def add_labels(en: dict[str, str], zh: dict[str, str]) -> None:
    """For a tab module: register its labels (call before the UI is built and mounted)."""
    LABELS["en"].update(en)
    LABELS["zh-CN"].update(zh)


MESSAGES: dict[Locale, dict[str, str]] = {
    "en": {
        "need_two": "Please provide two images",
        "need_one": "Please provide an image",
        "internal": "Internal error: the request could not be processed",
        "components_title": "Quality components (ISO/IEC 29794-5), failing first",
        "col_measure": "Measure",
        "col_value": "Value",
        "col_quality": "Quality (0–100)",
        "col_passes": "Requirement",
        "passes_yes": "met",
        "passes_no": "not met",
        "signin_title": "Sign in",
        "signin_key": "API key",
        "signin_button": "Sign in",
        "signin_wrong": "That key is not valid. Ask your administrator for one.",
        "signed_in_as": "Signed in as {name}",
        "sign_out": "Sign out",
        "open_server": "This server is open: anyone who can reach its port can use it and read its monitoring data. Set API_KEYS to require a key.",
        "similarity": "Similarity",
        "threshold": "threshold",
        "quality_a": "Quality A",
        "quality_b": "Quality B",
        "quality": "Quality",
        "band_good": "good",
        "band_borderline": "borderline",
        "band_low": "low",
        "faces_found": "Faces found",
        "response_time": "Response time",
        "no_face": "No face found",
        "heatmap_failed": "The quality heatmap could not be computed; the feature above is valid",
        "processed": "Processed",
        "mean_quality": "Mean quality",
        "low_quality": "Low quality (quality < {threshold:.2f}, reject threshold)",
        "webhook_rejects": "Below the webhook line (quality < {threshold:.2f}, AUTO_REJECT_THRESHOLD)",
        "webhook": "Webhook",
        "pending": "pending",
        "sent": "sent",
        "failed": "failed",
        "webhook_off": "WEBHOOK_URL not set: nothing is sent",
        "period_24h": "Last 24 hours",
        "period_7d": "Last 7 days",
        "today": "Today (UTC)",
        "all_sources": "All sources",
        "hourly_title": "Hourly mean quality and volume",
        "images": "Images",
        "heat_title": "Low-quality rate, last 7 days",
        "rate": "Rate",
        "utc_hour": "Hour (UTC)",
        "date": "Date",
        "source": "Source",
        "count": "Images",
        "low_rate": "Low-quality rate",
        "top_reasons": "Top reasons",
        "no_thumbs": "No low-quality image with a thumbnail in that hour",
        "gallery_none": "Create or pick a gallery first",
        "gallery_created": "Gallery {name} created",
        "enrol_need": "Give a name and at least one photo",
        "enrolled": "{label}: {enrolled} of {total} photos enrolled",
        "skipped": "Skipped",
        "removed": "{label} removed ({count} faces)",
        "remove_need": "Pick an identity to remove",
        "gallery_empty": "This gallery has no one enrolled yet",
        "faces_in_gallery": "{count} faces, {people} people",
        "unknown": "unknown",
        "no_faces_found": "No face found in this photo",
        "face": "Face",
        "name": "Name",
        "score": "Score",
        "no_photo": "enrolled over the API (no photo kept)",
        "bad_source": "The source must be at most 64 letters, digits or . _ : - characters",
        "bad_name": "The name must be 1 to 64 characters, without a slash (/) or a backslash",
        "bad_gallery_name": "The gallery name must be 1 to 64 characters, each a letter A–Z or a–z, a digit or one of . _ : - (no spaces)",
        "gallery_exists": "A gallery named {name} already exists: choose another name",
        "gallery_renamed": "Gallery renamed to {name}",
        "gallery_deleted": "Gallery {name} deleted ({count} faces)",
        "confirm_remove": "Remove {label} and their {count} faces from {gallery}? This cannot be undone.",
        "confirm_delete": "Delete the gallery {gallery} and its {count} faces? This cannot be undone.",
        "confirm_photo": "Remove photo #{face_id} of {label} from {gallery}? This cannot be undone.",
        "cancelled": "Nothing was removed",
        "photo_removed": "Photo #{face_id} of {label} removed",
        "photo_need": "Pick a photo to remove",
        "management_pending": "Renaming and deleting galleries needs service.gallery's management functions, not in this build yet",
        "several_faces": "{count} faces in image {side}: the blue box (1) was used, the largest and most central",
        "several_faces_one": "{count} faces in the image: the blue box (1) was used, the largest and most central",
        "rejected_feature": (
            "Quality {quality:.2f} is below the reject threshold {threshold:.2f}: this feature is unreliable. "
            "Do not enrol or match with it; take a better photo"
        ),
        "reasons": "Reasons",
        "hour_axis": "Hour ({tz})",
        "time_zone": "Times in {tz}",
        "reject_line": "reject {threshold:.2f}",
        "trust_line": "trust {threshold:.2f}",
        "csv_ready": "CSV written: {rows} sources, {events} events",
        "webhook_test_sent": "Test event delivered to the webhook (HTTP {status})",
        "webhook_test_failed": "The test event was not delivered: {error}",
        "scope": "scopes: {scopes}",
        "face_no": "#",
        "det_score": "Person score",
        "kpt_score": "Keypoint score",
        "bbox": "Box [x1, y1, x2, y2]",
        "visible_kpts": "Keypoints ≥ {threshold}",
        "source_needed": "Source",
        "col_hours": "Hours ({tz})",
        "col_failing_share": "Failing share",
        "col_failed_of": "Failed / measured",
        "no_failing_components": "No component fails yet in a source and hour of day with at least {min} measured images",
    },
    "zh": {
        "need_two": "请提供两张图像",
        "need_one": "请提供图像",
        "internal": "内部错误：请求无法处理",
        "components_title": "质量分项（ISO/IEC 29794-5），未达标项在前",
        "col_measure": "分项",
        "col_value": "测量值",
        "col_quality": "质量（0–100）",
        "col_passes": "要求",
        "passes_yes": "达标",
        "passes_no": "未达标",
        "signin_title": "登录",
        "signin_key": "API 密钥",
        "signin_button": "登录",
        "signin_wrong": "该密钥无效。请向管理员申请密钥。",
        "signed_in_as": "当前登录：{name}",
        "sign_out": "退出登录",
        "open_server": "本服务未设访问控制：任何能访问其端口的人都可使用它并查看监控数据。请设置 API_KEYS 以要求密钥。",
        "similarity": "相似度",
        "threshold": "阈值",
        "quality_a": "质量 A",
        "quality_b": "质量 B",
        "quality": "质量",
        "band_good": "良好",
        "band_borderline": "临界",
        "band_low": "过低",
        "faces_found": "检测到人脸",
        "response_time": "响应时间",
        "no_face": "未检测到人脸",
        "heatmap_failed": "质量热力图计算失败；上方的特征仍然有效",
        "processed": "已处理",
        "mean_quality": "平均质量",
        "low_quality": "低质量（质量 < {threshold:.2f}，拒绝阈值）",
        "webhook_rejects": "低于回调阈值（质量 < {threshold:.2f}，AUTO_REJECT_THRESHOLD）",
        "webhook": "回调",
        "pending": "待发送",
        "sent": "已发送",
        "failed": "失败",
        "webhook_off": "未配置 WEBHOOK_URL：不发送",
        "period_24h": "最近 24 小时",
        "period_7d": "最近 7 天",
        "today": "今日（UTC）",
        "all_sources": "全部来源",
        "hourly_title": "每小时平均质量与处理量",
        "images": "图像数",
        "heat_title": "近 7 天低质量占比",
        "rate": "占比",
        "utc_hour": "小时（UTC）",
        "date": "日期",
        "source": "来源",
        "count": "图像数",
        "low_rate": "低质量占比",
        "top_reasons": "主要原因",
        "no_thumbs": "该小时没有带缩略图的低质量图像",
        "gallery_none": "请先创建或选择人脸库",
        "gallery_created": "人脸库 {name} 已创建",
        "enrol_need": "请填写姓名并至少上传一张照片",
        "enrolled": "{label}：{total} 张照片中录入 {enrolled} 张",
        "skipped": "已跳过",
        "removed": "已删除 {label}（{count} 张人脸）",
        "remove_need": "请选择要删除的身份",
        "gallery_empty": "该人脸库尚未录入任何人",
        "faces_in_gallery": "{count} 张人脸，{people} 人",
        "unknown": "未知",
        "no_faces_found": "照片中未检测到人脸",
        "face": "人脸",
        "name": "姓名",
        "score": "分数",
        "no_photo": "通过 API 录入（未保存照片）",
        "bad_source": "来源最多 64 个字符，只能包含字母、数字或 . _ : -",
        "bad_name": "姓名须为 1 到 64 个字符，且不含斜杠（/）或反斜杠",
        "bad_gallery_name": "人脸库名称须为 1 到 64 个字符，只能使用英文字母、数字或 . _ : -（不含空格）",
        "gallery_exists": "已有名为 {name} 的人脸库：请换一个名称",
        "gallery_renamed": "人脸库已重命名为 {name}",
        "gallery_deleted": "人脸库 {name} 已删除（{count} 张人脸）",
        "confirm_remove": "确定从 {gallery} 中删除 {label} 及其 {count} 张人脸吗？此操作无法撤销。",
        "confirm_delete": "确定删除人脸库 {gallery} 及其 {count} 张人脸吗？此操作无法撤销。",
        "confirm_photo": "确定从 {gallery} 中删除 {label} 的照片 #{face_id} 吗？此操作无法撤销。",
        "cancelled": "未删除任何内容",
        "photo_removed": "已删除 {label} 的照片 #{face_id}",
        "photo_need": "请选择要删除的照片",
        "management_pending": "重命名和删除人脸库需要 service.gallery 的管理功能，当前版本尚未提供",
        "several_faces": "图像 {side} 中有 {count} 张人脸：使用了蓝框（1），即最大且最居中的人脸",
        "several_faces_one": "图像中有 {count} 张人脸：使用了蓝框（1），即最大且最居中的人脸",
        "rejected_feature": "质量 {quality:.2f} 低于拒绝阈值 {threshold:.2f}：该特征不可靠。请勿用于录入或比对，请重新拍摄",
        "reasons": "原因",
        "hour_axis": "小时（{tz}）",
        "time_zone": "时间以 {tz} 显示",
        "reject_line": "拒绝阈值 {threshold:.2f}",
        "trust_line": "可信阈值 {threshold:.2f}",
        "csv_ready": "已生成 CSV：{rows} 个来源，{events} 条事件",
        "webhook_test_sent": "测试事件已送达回调地址（HTTP {status}）",
        "webhook_test_failed": "测试事件未送达：{error}",
        "scope": "权限：{scopes}",
        "face_no": "序号",
        "det_score": "人体分数",
        "kpt_score": "关键点分数",
        "bbox": "边框 [x1, y1, x2, y2]",
        "visible_kpts": "关键点 ≥ {threshold}",
        "source_needed": "来源",
        "col_hours": "时段（{tz}）",
        "col_failing_share": "未达标占比",
        "col_failed_of": "未达标 / 已测",
        "no_failing_components": "尚无分项未达标（仅统计已测图像不少于 {min} 张的来源和时段）",
    },
}

# Chinese for the engine's typed errors (their English text is the exception message itself).
ERRORS_ZH = {
    "invalid_image": "无法读取该图像：请使用 JPEG、PNG、WEBP、BMP、GIF 或 TIFF 文件",
    "image_too_large": "图像过大：超出配置的大小上限",
    "no_face": "未检测到人脸",
    "unknown_model": "未知的模型名称",
    "weights_missing": "该模型的权重文件不在本机",
    "error": "请求无法处理",
}


SCOPE_NAMES = {
    "extract": ("extract", "提取"),
    "compare": ("compare", "比对"),
    "gallery:read": ("gallery:read", "人脸库查询"),
    "gallery:write": ("gallery:write", "人脸库管理"),
    "monitor": ("monitor", "监控"),
    "keypoints": ("keypoints", "关键点"),
    "admin": ("admin", "管理员（全部权限）"),
}


def scope_name(scope: str, locale: Locale) -> str:
    """A key's scope as the header shows it: its name in English, its meaning in Chinese."""
    english, chinese = SCOPE_NAMES.get(scope, (scope, scope))
    return chinese if locale == "zh" else english


def locale_of(request: Any) -> Locale:
    """``zh`` when the request's first preferred language is Chinese, else ``en`` (the UI's two languages)."""
    headers = getattr(request, "headers", None) or {}
    accepted = headers.get("accept-language", "") if hasattr(headers, "get") else ""
    first = accepted.split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def tr(locale: Locale, key: str, **fields: Any) -> str:
    """The message ``key`` in ``locale`` (English when missing), formatted with ``fields``."""
    template = MESSAGES.get(locale, MESSAGES["en"]).get(key) or MESSAGES["en"][key]
    return template.format(**fields) if fields else template


def decision_text(decision: str, locale: Locale) -> str:
    """A compare decision in one language (its sentences live in schemas.messages, beside the API's)."""
    english, chinese = DECISION_TEXTS[decision]
    return chinese if locale == "zh" else english


def reason_text(code: str, locale: Locale, short: bool = False) -> str:
    """A reason code in one language; ``short`` keeps the part before the colon (for tables and captions)."""
    texts = REASON_TEXTS.get(code)
    if texts is None:
        return code
    text = texts[1] if locale == "zh" else texts[0]
    if short:
        text = text.split("：" if locale == "zh" else ":")[0]
    return text


def error_text(error: FroodError, locale: Locale) -> str:
    """A typed engine error in one language (which image it concerns is kept in Chinese too)."""
    if locale != "zh":
        return str(error)
    text = ERRORS_ZH.get(error.code, ERRORS_ZH["error"])
    message = str(error)
    for side in ("A", "B"):
        if message.endswith(f"image {side}"):
            text = f"图像 {side} 中{text}"
    return text
