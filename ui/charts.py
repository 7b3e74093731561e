"""Plotly figures for the Monitor tab, built from the store's DataFrames (labels come from the caller)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def hourly_quality_figure(frame: pd.DataFrame, title: str, quality_label: str, volume_label: str, hour_label: str = "UTC hour") -> go.Figure:
    """Mean quality per hour (line, left axis) over the volume per hour (bars, right axis)."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Bar(x=frame["hour"], y=frame["count"], name=volume_label, marker_color="rgba(120,144,156,0.45)"), secondary_y=True)
    figure.add_trace(
        go.Scatter(x=frame["hour"], y=frame["mean_quality"], name=quality_label, mode="lines+markers", connectgaps=False, line_color="#1e88e5"),
        secondary_y=False,
    )
    figure.update_yaxes(title_text=quality_label, range=[0, 1], secondary_y=False)
    figure.update_yaxes(title_text=volume_label, rangemode="tozero", secondary_y=True)
    figure.update_xaxes(title_text=hour_label)
    figure.update_layout(title=title, height=360, margin={"l": 50, "r": 50, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return figure


def heatmap_figure(frame: pd.DataFrame, title: str, rate_label: str, hour_label: str = "UTC hour", date_label: str = "Date") -> go.Figure:
    """Day × hour heatmap of the low-quality rate (empty cells: no traffic, not a rate of 0)."""
    figure = go.Figure(
        go.Heatmap(
            z=frame.to_numpy(dtype=float),
            x=[f"{hour:02d}" for hour in frame.columns],
            y=[str(day) for day in frame.index],
            zmin=0,
            zmax=1,
            colorscale="RdYlGn_r",
            colorbar={"title": rate_label},
            hoverongaps=False,
        )
    )
    figure.update_layout(title=title, height=320, margin={"l": 90, "r": 30, "t": 50, "b": 40}, xaxis_title=hour_label, yaxis_title=date_label)
    figure.update_yaxes(type="category")
    figure.update_xaxes(type="category")
    return figure
