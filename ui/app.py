"""The Gradio Blocks: one builder per tab (a new tab is one more call here)."""

from __future__ import annotations

import gradio as gr

from ui.compare import build_compare_tab
from ui.extract import build_extract_tab
from ui.gallery import build_gallery_tab
from ui.i18n import I18N
from ui.monitor import build_monitor_tab
from ui.pose import build_pose_tab

GRADIO_CACHE_CLEANUP = (3600, 3600)  # Gradio's own cached copies: swept hourly, kept an hour


def build_ui() -> gr.Blocks:
    """The Blocks: one builder per tab (a new tab is one more call here)."""
    with gr.Blocks(title="face-recognition-ood", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(I18N("title"))
        build_compare_tab()
        build_extract_tab()
        build_monitor_tab()
        build_gallery_tab()
        build_pose_tab(I18N)
    return demo
