"""The Monitor tab: the period's numbers, hourly quality and volume, the day x hour heatmap, per-source numbers,
which components fail most per source and hour of day, the low-quality thumbnails of an hour, a CSV export of the
period and a test event for the reject webhook.

Times are stored in UTC; the tab shows them in ``DISPLAY_TIMEZONE`` (the hour choices keep the UTC hour as their
value, so a choice means the same hour whatever the zone)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, tzinfo

import gradio as gr
import pandas as pd

from errors import FroodError
from schemas.component_messages import component_label
from schemas.monitor import component_failure_sentence, hour_span
from service import faces as service
from service import webhook as webhook_service
from service.access import requires
from service.monitor import (
    MIN_IMAGES,
    component_failures_csv,
    display_zone,
    events_csv,
    monitor_snapshot,
    per_source_csv,
    window_start,
    zone_name,
)
from settings import get_settings
from ui import charts, facegrid
from ui.common import clean_source, colon, done, error_markdown, warning
from ui.i18n import I18N, Locale, locale_of, reason_text, tr

log = logging.getLogger("frood.ui")
ALL_SOURCES = ""
HOUR_VALUE = "%Y-%m-%d %H:00"  # the UTC hour, as the choice's value
FAILING_ROWS_SHOWN = 20  # the table's rows (the CSV and /stats have them all)
FAILING_SENTENCES = 3  # the worst rows also said in words above the table


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None or pd.isna(value) else pattern.format(value)


def _source_or_none(source: str | None) -> str | None:
    """The Monitor's filter: None for all sources, else a validated source id."""
    return clean_source(source) if source else None


PERIOD_LABELS = {"today": "today", "24h": "period_24h", "7d": "period_7d"}


def summary_markdown(snapshot: dict, locale: Locale) -> str:
    """Both "reject" numbers named with their thresholds: the quality gate and the webhook's (and whether it sends)."""
    hook = snapshot["webhook"]
    c = colon(locale)
    webhook_state = (
        f"{tr(locale, 'pending')} {hook['pending']} · {tr(locale, 'sent')} {hook['sent']} · {tr(locale, 'failed')} {hook['failed']}"
        if snapshot["webhook_enabled"]
        else tr(locale, "webhook_off")
    )
    period = tr(locale, PERIOD_LABELS.get(snapshot.get("window", "today"), "today"))
    return (
        f"**{period}** · **{tr(locale, 'processed')}**{c}{snapshot['count']} · "
        f"**{tr(locale, 'mean_quality')}**{c}{_fmt(snapshot['mean_quality'])}\n\n"
        f"- **{tr(locale, 'low_quality', threshold=snapshot['reject_threshold'])}**{c}{_fmt(snapshot['low_quality_rate'], '{:.1%}')}\n"
        f"- **{tr(locale, 'webhook_rejects', threshold=snapshot['auto_reject_threshold'])}**{c}{snapshot['rejected']}\n"
        f"- **{tr(locale, 'webhook')}**{c}{webhook_state}\n"
        f"- {tr(locale, 'time_zone', tz=zone_name(display_zone()))}"
    )


def per_source_table(frame: pd.DataFrame, locale: Locale) -> pd.DataFrame:
    """The store's per-source frame with readable numbers, reasons and headers in the request's language (the
    reasons second, so a phone shows them without scrolling sideways)."""
    return pd.DataFrame(
        {
            tr(locale, "source"): frame["source"],
            tr(locale, "top_reasons"): ["; ".join(reason_text(code, locale, short=True) for code in codes) for codes in frame["top_reasons"]],
            tr(locale, "count"): frame["count"].astype(int),
            tr(locale, "mean_quality"): [_fmt(value) for value in frame["mean_quality"]],
            tr(locale, "low_rate"): [_fmt(value, "{:.1%}") for value in frame["low_quality_rate"]],
        }
    )


def failing_components_table(rows: list[dict], zone: tzinfo, locale: Locale) -> pd.DataFrame:
    """The service's "components that fail most" rows (already most failing first) in the request's language: the
    source, the local hour span, the component's name, the share and its counts."""
    rows = rows[:FAILING_ROWS_SHOWN]
    language = "zh" if locale == "zh" else "en"
    return pd.DataFrame(
        {
            tr(locale, "source"): [row["source"] for row in rows],
            tr(locale, "col_hours", tz=zone_name(zone)): [hour_span(row["hour"]) for row in rows],
            tr(locale, "col_measure"): [component_label(row["component"], language) for row in rows],
            tr(locale, "col_failing_share"): [f"{row['share']:.0%}" for row in rows],
            tr(locale, "col_failed_of"): [f"{row['failed']} / {row['images']}" for row in rows],
        }
    )


def failing_components_markdown(rows: list[dict], locale: Locale) -> str:
    """The worst rows in words ("gate-2 fails … 60 % of the time at 18:00–19:00"), or why the table is empty."""
    if not rows:
        return tr(locale, "no_failing_components", min=MIN_IMAGES)
    language = "zh" if locale == "zh" else "en"
    return "\n".join(f"- {component_failure_sentence(row, language)}" for row in rows[:FAILING_SENTENCES])


def local_heatmap(frame: pd.DataFrame, zone: tzinfo) -> pd.DataFrame:
    """The store's UTC day × hour table moved to the display zone (cells of one local hour averaged)."""
    if zone_name(zone) == "UTC" or frame.empty:
        return frame
    cells: dict[tuple, list[float]] = {}
    for day in frame.index:
        for hour in frame.columns:
            local = datetime(day.year, day.month, day.day, int(hour), tzinfo=UTC).astimezone(zone)
            value = frame.loc[day, hour]
            cells.setdefault((local.date(), local.hour), [])
            if not pd.isna(value):
                cells[(local.date(), local.hour)].append(float(value))
    days = sorted({day for day, _ in cells})[-len(frame.index) :]
    table = pd.DataFrame(index=days, columns=range(24), dtype=float)
    for (day, hour), values in cells.items():
        if day in table.index and values:
            table.loc[day, hour] = sum(values) / len(values)
    return table


@requires("monitor")
def on_monitor(window: str, source: str | None = None, request: gr.Request | None = None, hour: str | None = None):
    """Summary, hourly chart, day × hour heatmap, per-source table, hour and source choices, the thumbnails of the
    hour the operator chose (kept across refreshes while it is still in the window, else the latest hour's), and
    the components that fail most per source and hour of day (a table and its worst rows in words)."""
    locale = locale_of(request)
    settings = get_settings()
    try:
        chosen = _source_or_none(source)
    except FroodError as error:
        failed = error_markdown(error, locale)
        return failed, gr.Plot(), gr.Plot(), gr.Dataframe(), gr.Dropdown(), gr.Dropdown(), gr.HTML(), gr.Dataframe(), gr.Markdown()
    store = service.store()
    zone = display_zone()
    hour_axis = tr(locale, "hour_axis", tz=zone_name(zone))
    now = datetime.now(UTC)
    window = window if window in ("24h", "7d") else "24h"
    since = window_start(window, now)
    threshold = settings.reject_threshold
    # Up to the end of the current hour: an event stored in this very second is in the chart as in the summary.
    until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    frame = store.hourly(since, until, threshold, source=chosen)
    utc_hours = list(pd.to_datetime(frame["hour"], utc=True))
    shown = frame.assign(hour=pd.to_datetime(frame["hour"], utc=True).dt.tz_convert(zone).dt.tz_localize(None))
    lines = [
        (threshold, tr(locale, "reject_line", threshold=threshold), "#b91c1c"),
        (settings.trust_threshold, tr(locale, "trust_line", threshold=settings.trust_threshold), "#15803d"),
    ]
    line = charts.hourly_quality_figure(shown, tr(locale, "hourly_title"), tr(locale, "mean_quality"), tr(locale, "images"), hour_axis, lines)
    heat = charts.heatmap_figure(
        local_heatmap(store.day_hour_heatmap(7, now, threshold, source=chosen), zone),
        tr(locale, "heat_title") + (f" · {chosen}" if chosen else ""),
        tr(locale, "rate"),
        hour_axis,
        tr(locale, "date"),
    )
    table = per_source_table(store.per_source(since, threshold, source=chosen), locale)
    choices = [(stamp.astimezone(zone).strftime(HOUR_VALUE), stamp.strftime(HOUR_VALUE)) for stamp, count in zip(utc_hours, frame["count"]) if count][::-1]
    values = [value for _, value in choices]
    source_choices = [(tr(locale, "all_sources"), ALL_SOURCES)] + [(name, name) for name in store.sources()]
    picked = hour if hour in values else (values[0] if values else None)
    snapshot = monitor_snapshot(chosen, window)
    failing = snapshot["failing_components"]  # the same period, source and display zone as the rest of the tab
    return (
        summary_markdown(snapshot, locale),
        line,
        heat,
        table,
        gr.Dropdown(choices=choices, value=picked),
        gr.Dropdown(choices=source_choices, value=chosen or ALL_SOURCES),
        on_hour(picked, chosen, request),
        failing_components_table(failing, zone, locale),
        failing_components_markdown(failing, locale),
    )


@requires("monitor")
def on_hour(hour: str | None, source: str | None = None, request: gr.Request | None = None) -> str:
    """The low-quality thumbnails of one (UTC) hour at native size, each captioned with its time in the display
    zone, quality, reasons and source."""
    locale = locale_of(request)
    if not hour:
        return ""
    try:
        start = datetime.strptime(hour, HOUR_VALUE).replace(tzinfo=UTC)
        chosen = _source_or_none(source)
    except (ValueError, FroodError) as error:
        return error_markdown(error if isinstance(error, FroodError) else FroodError(str(error)), locale)
    zone = display_zone()
    tiles = []
    events = service.store().low_quality_in_hour(start, low_quality_threshold=get_settings().reject_threshold, source=chosen)
    for event in events:
        rgb = facegrid.read_rgb(event.thumbnail_path) if event.thumbnail_path else None
        if rgb is None:
            continue
        caption = [f"{event.timestamp.astimezone(zone):%H:%M:%S} · {tr(locale, 'quality')} {event.quality:.2f}", event.source]
        caption += [reason_text(code, locale, short=True) for code in event.reason_codes]
        tiles.append(facegrid.figure(rgb, caption, css_class="thumb-tile"))
    return facegrid.grid(tiles, "thumb-grid") if tiles else facegrid.message(tr(locale, "no_thumbs"))


@requires("monitor")
def on_export(window: str, source: str | None = None, request: gr.Request | None = None):
    """The period's per-source table, its failing components per source and hour of day, and its events as three CSV
    files (UTC and display-zone times in the events, the display zone's hours in the components')."""
    from ui.extract import downloads_folder

    locale = locale_of(request)
    try:
        chosen = _source_or_none(source)
        window = window if window in ("24h", "7d") else "24h"
        now = datetime.now(UTC)
        since = window_start(window, now)
        folder = downloads_folder()
        suffix = f"{window}-{chosen or 'all'}-{now:%Y%m%dT%H%MZ}"
        table_path = folder / f"per-source-{suffix}.csv"
        table_csv = per_source_csv(since, chosen)
        table_path.write_text(table_csv, encoding="utf-8")
        until = now + timedelta(seconds=1)
        components_path = folder / f"failing-components-{suffix}.csv"
        components_path.write_text(component_failures_csv(since, until, chosen, display_zone()), encoding="utf-8")
        events_path = folder / f"events-{suffix}.csv"
        text, count = events_csv(since, until, chosen, display_zone())
        events_path.write_text(text, encoding="utf-8")
    except Exception as error:
        return error_markdown(error, locale), None
    rows = max(0, len(table_csv.strip().splitlines()) - 1)
    return done(tr(locale, "csv_ready", rows=rows, events=count)), [str(table_path), str(components_path), str(events_path)]


@requires("admin")
def on_webhook_test(request: gr.Request | None = None) -> str:
    """One signed test event to WEBHOOK_URL now (outside the outbox): is the receiver there, does it accept us?"""
    locale = locale_of(request)
    outbox = service.outbox()
    if outbox is None or not outbox.url:
        return warning(tr(locale, "webhook_off"))
    delivered, detail = webhook_service.send_test_event(outbox)
    if delivered:
        return done(tr(locale, "webhook_test_sent", status=detail.removeprefix("HTTP ")))
    return warning(tr(locale, "webhook_test_failed", error=detail))


def build_monitor_tab() -> None:
    with gr.Tab(I18N("monitor"), elem_id="monitor-tab") as tab:
        with gr.Row():
            window = gr.Radio(["24h", "7d"], value="24h", label=I18N("window"))
            source = gr.Dropdown(label=I18N("source_filter"), choices=[], value=None, allow_custom_value=True, elem_id="monitor-source")
            refresh = gr.Button(I18N("refresh"), elem_id="monitor-refresh")
        summary = gr.Markdown(elem_id="monitor-summary")
        hourly_plot = gr.Plot(elem_id="monitor-hourly")
        heatmap_plot = gr.Plot(elem_id="monitor-heatmap")
        gr.Markdown(I18N("per_source"))
        table = gr.Dataframe(interactive=False, elem_id="monitor-per-source", wrap=True, buttons=[])
        gr.Markdown(I18N("failing_components"))
        failing_words = gr.Markdown(elem_id="monitor-failing-words")
        failing_table = gr.Dataframe(interactive=False, elem_id="monitor-failing-components", wrap=True, buttons=[])
        hour = gr.Dropdown(label=I18N("hour"), choices=[], allow_custom_value=False, elem_id="monitor-hour")
        gr.Markdown(I18N("thumbs"))
        thumbs = gr.HTML(elem_id="monitor-thumbs")
        with gr.Row():
            export = gr.Button(I18N("export_csv"), elem_id="monitor-export")
            webhook_test = gr.Button(I18N("webhook_test"), elem_id="monitor-webhook-test")
        action_status = gr.Markdown(elem_id="monitor-action-status")
        csv_files = gr.File(label=I18N("csv_files_components"), file_count="multiple", elem_id="monitor-csv")
        outputs = [summary, hourly_plot, heatmap_plot, table, hour, source, thumbs, failing_table, failing_words]
        inputs = [window, source, hour]  # the chosen hour goes in, so a refresh keeps it
        refresh.click(on_monitor, inputs, outputs, api_name="monitor")
        window.change(on_monitor, inputs, outputs, api_name=False)
        source.input(on_monitor, inputs, outputs, api_name=False)
        tab.select(on_monitor, inputs, outputs, api_name=False)
        gr.Timer(30).tick(on_monitor, inputs, outputs, api_name=False, show_progress="hidden")
        hour.input(on_hour, [hour, source], [thumbs], api_name=False)
        export.click(on_export, [window, source], [action_status, csv_files], api_name="monitor_export")
        webhook_test.click(on_webhook_test, None, [action_status], api_name="webhook_test")
