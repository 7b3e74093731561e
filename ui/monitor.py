"""The Monitor tab: today's numbers, hourly quality and volume, the day x hour heatmap, per-source numbers and
the low-quality thumbnails of an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import gradio as gr
import pandas as pd

from errors import FroodError
from service import faces as service
from service.access import requires
from service.monitor import monitor_snapshot, window_start
from settings import get_settings
from ui import charts, facegrid
from ui.common import clean_source, error_markdown
from ui.i18n import I18N, Locale, locale_of, reason_text, tr

ALL_SOURCES = ""


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None or pd.isna(value) else pattern.format(value)


def _source_or_none(source: str | None) -> str | None:
    """The Monitor's filter: None for all sources, else a validated source id."""
    return clean_source(source) if source else None


PERIOD_LABELS = {"today": "today", "24h": "period_24h", "7d": "period_7d"}


def summary_markdown(snapshot: dict, locale: Locale) -> str:
    """Both "reject" numbers named with their thresholds: the quality gate and the webhook's (and whether it sends)."""
    hook = snapshot["webhook"]
    webhook_state = (
        f"{tr(locale, 'pending')} {hook['pending']} · {tr(locale, 'sent')} {hook['sent']} · {tr(locale, 'failed')} {hook['failed']}"
        if snapshot["webhook_enabled"]
        else tr(locale, "webhook_off")
    )
    period = tr(locale, PERIOD_LABELS.get(snapshot.get("window", "today"), "today"))
    return (
        f"**{period}** · **{tr(locale, 'processed')}:** {snapshot['count']} · "
        f"**{tr(locale, 'mean_quality')}:** {_fmt(snapshot['mean_quality'])}\n\n"
        f"- **{tr(locale, 'low_quality', threshold=snapshot['reject_threshold'])}:** {_fmt(snapshot['low_quality_rate'], '{:.1%}')}\n"
        f"- **{tr(locale, 'webhook_rejects', threshold=snapshot['auto_reject_threshold'])}:** {snapshot['rejected']}\n"
        f"- **{tr(locale, 'webhook')}:** {webhook_state}"
    )


def per_source_table(frame: pd.DataFrame, locale: Locale) -> pd.DataFrame:
    """The store's per-source frame with readable numbers, reasons and headers in the request's language."""
    return pd.DataFrame(
        {
            tr(locale, "source"): frame["source"],
            tr(locale, "count"): frame["count"].astype(int),
            tr(locale, "mean_quality"): [_fmt(value) for value in frame["mean_quality"]],
            tr(locale, "low_rate"): [_fmt(value, "{:.1%}") for value in frame["low_quality_rate"]],
            tr(locale, "top_reasons"): ["; ".join(reason_text(code, locale, short=True) for code in codes) for codes in frame["top_reasons"]],
        }
    )


@requires("monitor")
def on_monitor(window: str, source: str | None = None, request: gr.Request | None = None, hour: str | None = None):
    """Summary, hourly chart, day × hour heatmap, per-source table, hour and source choices, and the thumbnails of
    the hour the operator chose (kept across refreshes while it is still in the window), else the latest hour's."""
    locale = locale_of(request)
    settings = get_settings()
    try:
        chosen = _source_or_none(source)
    except FroodError as error:
        return error_markdown(error, locale), gr.Plot(), gr.Plot(), gr.Dataframe(), gr.Dropdown(), gr.Dropdown(), gr.HTML()
    store = service.store()
    now = datetime.now(UTC)
    window = window if window in ("24h", "7d") else "24h"
    since = window_start(window, now)
    threshold = settings.reject_threshold
    # Up to the end of the current hour: an event stored in this very second is in the chart as in the summary.
    until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    frame = store.hourly(since, until, threshold, source=chosen)
    line = charts.hourly_quality_figure(
        frame, tr(locale, "hourly_title"), tr(locale, "mean_quality"), tr(locale, "images"), tr(locale, "utc_hour")
    )
    heat = charts.heatmap_figure(
        store.day_hour_heatmap(7, now, threshold, source=chosen),
        tr(locale, "heat_title") + (f" · {chosen}" if chosen else ""),
        tr(locale, "rate"),
        tr(locale, "utc_hour"),
        tr(locale, "date"),
    )
    table = per_source_table(store.per_source(since, threshold, source=chosen), locale)
    choices = [hour.strftime("%Y-%m-%d %H:00") for hour, count in zip(frame["hour"], frame["count"]) if count][::-1]
    source_choices = [(tr(locale, "all_sources"), ALL_SOURCES)] + [(name, name) for name in store.sources()]
    shown = hour if hour in choices else (choices[0] if choices else None)
    return (
        summary_markdown(monitor_snapshot(chosen, window), locale),
        line,
        heat,
        table,
        gr.Dropdown(choices=choices, value=shown),
        gr.Dropdown(choices=source_choices, value=chosen or ALL_SOURCES),
        on_hour(shown, chosen, request),
    )


@requires("monitor")
def on_hour(hour: str | None, source: str | None = None, request: gr.Request | None = None) -> str:
    """The low-quality thumbnails of one hour at native size, each captioned with time, quality, reasons, source."""
    locale = locale_of(request)
    if not hour:
        return ""
    try:
        start = datetime.strptime(hour, "%Y-%m-%d %H:00").replace(tzinfo=UTC)
        chosen = _source_or_none(source)
    except (ValueError, FroodError) as error:
        return error_markdown(error if isinstance(error, FroodError) else FroodError(str(error)), locale)
    tiles = []
    events = service.store().low_quality_in_hour(start, low_quality_threshold=get_settings().reject_threshold, source=chosen)
    for event in events:
        rgb = facegrid.read_rgb(event.thumbnail_path) if event.thumbnail_path else None
        if rgb is None:
            continue
        caption = [f"{event.timestamp:%H:%M:%S} · {tr(locale, 'quality')} {event.quality:.2f}", event.source]
        caption += [reason_text(code, locale, short=True) for code in event.reason_codes]
        tiles.append(facegrid.figure(rgb, caption, css_class="thumb-tile"))
    return facegrid.grid(tiles, "thumb-grid") if tiles else facegrid.message(tr(locale, "no_thumbs"))


def build_monitor_tab() -> None:
    with gr.Tab(I18N("monitor"), elem_id="monitor-tab") as tab:
        with gr.Row():
            window = gr.Radio(["24h", "7d"], value="24h", label=I18N("window"))
            source = gr.Dropdown(label=I18N("source_filter"), choices=[], value=None, allow_custom_value=True, elem_id="monitor-source")
            refresh = gr.Button(I18N("refresh"), elem_id="monitor-refresh")
        summary = gr.Markdown(elem_id="monitor-summary")
        hourly_plot = gr.Plot()
        heatmap_plot = gr.Plot()
        gr.Markdown(I18N("per_source"))
        table = gr.Dataframe(interactive=False, elem_id="monitor-per-source", wrap=True)
        hour = gr.Dropdown(label=I18N("hour"), choices=[], allow_custom_value=False, elem_id="monitor-hour")
        gr.Markdown(I18N("thumbs"))
        thumbs = gr.HTML(elem_id="monitor-thumbs")
        outputs = [summary, hourly_plot, heatmap_plot, table, hour, source, thumbs]
        inputs = [window, source, hour]  # the chosen hour goes in, so a refresh keeps it
        refresh.click(on_monitor, inputs, outputs, api_name="monitor")
        window.change(on_monitor, inputs, outputs, api_name=False)
        source.input(on_monitor, inputs, outputs, api_name=False)
        tab.select(on_monitor, inputs, outputs, api_name=False)
        gr.Timer(30).tick(on_monitor, inputs, outputs, api_name=False)
        hour.input(on_hour, [hour, source], [thumbs], api_name=False)
