"""Plotly figures for the Monitor tab, built from the store's DataFrames (labels come from the caller).

Dates are written as numbers (``%m-%d %H:00``), never as month names Plotly would write in English; the
heatmap's scale is colour-blind safe (cividis: blue to yellow, no red against green) and in percent; the
hourly chart draws the reject and trust thresholds it is read against. Axis titles are kept inside the
figure (``automargin``) so a phone-width chart does not clip them.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DATE_HOUR = "%m-%d %H:00"
MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}


def hourly_quality_figure(
    frame: pd.DataFrame,
    title: str,
    quality_label: str,
    volume_label: str,
    hour_label: str = "UTC hour",
    thresholds: list[tuple[float, str, str]] | None = None,
) -> go.Figure:
    """Mean quality per hour (line, left axis) over the volume per hour (bars, right axis); ``thresholds``:
    (value, label, colour) lines on the quality axis. ``frame["hour"]`` is in the zone the axis names."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    hover = f"%{{x|{DATE_HOUR}}}<br>%{{y}}<extra>%{{fullData.name}}</extra>"
    figure.add_trace(
        go.Bar(x=frame["hour"], y=frame["count"], name=volume_label, marker_color="rgba(120,144,156,0.45)", hovertemplate=hover), secondary_y=True
    )
    figure.add_trace(
        go.Scatter(
            x=frame["hour"], y=frame["mean_quality"], name=quality_label, mode="lines+markers", connectgaps=False, line_color="#1d4ed8",
            hovertemplate=f"%{{x|{DATE_HOUR}}}<br>%{{y:.2f}}<extra>%{{fullData.name}}</extra>",
        ),
        secondary_y=False,
    )
    for value, label, colour in thresholds or []:
        figure.add_hline(
            y=value, line_dash="dash", line_color=colour, line_width=1.5, annotation_text=label, annotation_position="top left",
            annotation_font_color=colour, secondary_y=False,
        )
    figure.update_yaxes(title_text=quality_label, range=[0, 1], secondary_y=False, automargin=True)
    figure.update_yaxes(title_text=volume_label, rangemode="tozero", secondary_y=True, automargin=True)
    figure.update_xaxes(title_text=hour_label, tickformat=DATE_HOUR, hoverformat=DATE_HOUR, automargin=True)
    figure.update_layout(title=title, height=380, margin=MARGIN, legend={"orientation": "h", "y": -0.35})
    return figure


def heatmap_figure(frame: pd.DataFrame, title: str, rate_label: str, hour_label: str = "UTC hour", date_label: str = "Date") -> go.Figure:
    """Day × hour heatmap of the low-quality rate in percent (empty cells: no traffic, not a rate of 0)."""
    figure = go.Figure(
        go.Heatmap(
            z=frame.to_numpy(dtype=float) * 100,
            x=[f"{hour:02d}" for hour in frame.columns],
            y=[str(day) for day in frame.index],
            zmin=0,
            zmax=100,
            colorscale="Cividis",
            colorbar={"title": {"text": rate_label}, "ticksuffix": "%"},
            hoverongaps=False,
            hovertemplate=f"{date_label} %{{y}}<br>{hour_label} %{{x}}<br>{rate_label} %{{z:.0f}}%<extra></extra>",
        )
    )
    figure.update_layout(title=title, height=340, margin=MARGIN, xaxis_title=hour_label, yaxis_title=date_label)
    figure.update_yaxes(type="category", automargin=True)
    figure.update_xaxes(type="category", automargin=True)
    return figure
