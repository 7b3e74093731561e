"""The Gradio Blocks: one builder per tab (a new tab is one more call here), under a line saying who is
signed in, or that the server is open to anyone."""

from __future__ import annotations

import gradio as gr

from service.access import SESSION_COOKIE, SIGNED_IN, door, requires
from settings import get_settings
from ui.common import warning
from ui.compare import build_compare_tab
from ui.extract import build_extract_tab
from ui.gallery import build_gallery_tab
from ui.i18n import I18N, locale_of, scope_name, tr
from ui.monitor import build_monitor_tab
from ui.pose import build_pose_tab


@requires(SIGNED_IN)
def on_identity(request: gr.Request | None = None) -> str:
    """"Signed in as NAME · scopes: … · Sign out", or the open-server warning."""
    locale = locale_of(request)
    if door().open:
        return warning(tr(locale, "open_server"))
    token = request.request.cookies.get(SESSION_COOKIE) if request is not None and request.request is not None else None
    principal = door().principal_for_session(token)
    if principal is None:  # an API client with a key header: no session to show
        return ""
    scopes = "、".join(scope_name(name, locale) for name in principal.spec.scopes) if principal.spec is not None else ""
    scopes = scopes if locale == "zh" else scopes.replace("、", ", ")
    scope = f" · {tr(locale, 'scope', scopes=scopes)}" if scopes else ""
    return f"{tr(locale, 'signed_in_as', name=principal.name)}{scope} · [{tr(locale, 'sign_out')}](/logout)"


def build_ui() -> gr.Blocks:
    """The Blocks, with Gradio's analytics off and its temporary files swept every minute (``UI_TEMP_KEEP_S``)."""
    keep = get_settings().ui_temp_keep_s
    with gr.Blocks(title=I18N("tab_title"), delete_cache=(min(60, keep), keep), analytics_enabled=False) as demo:
        identity = gr.Markdown(elem_id="signed-in")
        gr.Markdown(I18N("title"))
        build_compare_tab()
        build_extract_tab()
        build_monitor_tab()
        build_gallery_tab()
        build_pose_tab(I18N)
        # The page's style and script (tab title, Gradio's words in Chinese) come with the mount (app.py).
        demo.load(on_identity, None, identity, api_name=False)
    return demo
