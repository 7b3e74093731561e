"""Evaluation reports: ``report.json`` (every number), ``report.html`` (Plotly, self-contained) and PNG plots.

Every plot is first described as a backend-neutral :class:`Chart`, then drawn by Plotly for the HTML and,
for the PNGs, by matplotlib when importable, else Plotly + kaleido, else OpenCV. So the PNGs always exist
(this machine often has neither matplotlib nor kaleido) and show the same data as the HTML. The HTML
embeds plotly.js (``include_plotlyjs="inline"``): reports are read on machines without internet.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("frood.eval")

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class Series:
    """One line or bar set. For ``hbar`` ``x`` holds the values and ``y`` the category labels."""

    name: str
    x: list[Any]
    y: list[Any]
    kind: str = "line"  # line | bar | hbar


@dataclass
class Chart:
    """A plot in backend-neutral form, so HTML and PNG show the same thing."""

    key: str
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    xlog: bool = False
    xrange: tuple[float, float] | None = None
    yrange: tuple[float, float] | None = None
    vlines: list[tuple[float, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN) and private ``_`` keys are dropped."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items() if not str(key).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def slug(name: str) -> str:
    """A file-name-safe form of a model name (remote names hold a URL)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "model"


# --------------------------------------------------------------------------- charts


def build_charts(report: dict) -> list[Chart]:
    """ROC (all models), then per model: score histograms, EDC curves, OOD AUROC bars."""
    charts = []
    roc_series = []
    for section in report["models"]:
        roc = section["verification"]["roc"]
        points = [(f, t) for f, t in zip(roc["fpr"], roc["tpr"]) if f > 0]
        roc_series.append(Series(section["name"], [p[0] for p in points], [p[1] for p in points]))
    impostors = min(section["verification"]["impostor_pairs"] for section in report["models"])
    charts.append(
        Chart(
            "roc",
            "ROC: TAR vs FAR",
            "FAR (false accept rate, log)",
            "TAR (true accept rate)",
            roc_series,
            xlog=True,
            xrange=(1.0 / max(impostors, 1), 1.0),
            yrange=(0.0, 1.02),
        )
    )
    for section in report["models"]:
        name, key = section["name"], slug(section["name"])
        verification = section["verification"]
        hist = verification["histogram"]
        edges = np.asarray(hist["bin_edges"])
        centers = ((edges[:-1] + edges[1:]) / 2).tolist()
        vlines = [(verification["eer_threshold"], "EER thr")]
        if verification.get("match_threshold") is not None:
            vlines.append((verification["match_threshold"], "match thr"))
        charts.append(
            Chart(
                f"hist-{key}",
                f"Score histograms: {name}",
                "cosine similarity",
                "pairs",
                [Series("genuine", centers, hist["genuine"], "bar"), Series("impostor", centers, hist["impostor"], "bar")],
                vlines=vlines,
            )
        )
        curves = section["quality"]["curves"]
        edc = [Series(measure, curve["discard"], [v if v is not None else float("nan") for v in curve["fnmr"]]) for measure, curve in curves.items()]
        if edc:
            charts.append(
                Chart(f"edc-{key}", f"EDC at FMR {section['quality']['fmr']:g}: {name}", "fraction of genuine pairs discarded", "FNMR", edc, xrange=(0.0, 0.5))
            )
        corruptions = section.get("ood", {}).get("corruptions") or {}
        if corruptions:
            labels = list(corruptions)
            charts.append(
                Chart(
                    f"ood-{key}",
                    f"OOD AUROC of the quality score: {name}",
                    "AUROC (clean vs corrupted)",
                    "",
                    [Series("AUROC", [corruptions[label]["auroc"] for label in labels], labels, "hbar")],
                    xrange=(0.0, 1.0),
                    vlines=[(0.5, "chance")],
                )
            )
    return charts


def plotly_figure(chart: Chart):
    """The Plotly figure of a chart (HTML, and PNG through kaleido)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for index, series in enumerate(chart.series):
        color = PALETTE[index % len(PALETTE)]
        if series.kind == "line":
            figure.add_trace(go.Scatter(x=series.x, y=series.y, mode="lines", name=series.name, line={"color": color}))
        elif series.kind == "bar":
            figure.add_trace(go.Bar(x=series.x, y=series.y, name=series.name, marker_color=color, opacity=0.6))
        else:
            figure.add_trace(
                go.Bar(x=series.x, y=series.y, name=series.name, orientation="h", marker_color=color, text=[f"{v:.3f}" for v in series.x], textposition="auto")
            )
    for index, (x, label) in enumerate(chart.vlines):
        figure.add_vline(x=x, line_dash="dash", line_color="#555", annotation_text=label, annotation_position="top" if index % 2 == 0 else "bottom")
    figure.update_layout(title=chart.title, xaxis_title=chart.xlabel, yaxis_title=chart.ylabel, barmode="overlay", template="plotly_white", height=450)
    if chart.xlog:
        figure.update_xaxes(type="log")
        if chart.xrange:
            figure.update_xaxes(range=[math.log10(chart.xrange[0]), math.log10(chart.xrange[1])])
    elif chart.xrange:
        figure.update_xaxes(range=list(chart.xrange))
    if chart.yrange:
        figure.update_yaxes(range=list(chart.yrange))
    if any(series.kind == "hbar" for series in chart.series):
        figure.update_yaxes(autorange="reversed")
    return figure


# --------------------------------------------------------------------------- PNG backends


def _hex_to_bgr(color: str) -> tuple[int, int, int]:
    return int(color[5:7], 16), int(color[3:5], 16), int(color[1:3], 16)


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= step * m)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return text.encode("ascii", "replace").decode("ascii")


def render_png_cv2(chart: Chart, path: Path, size: tuple[int, int] = (960, 600)) -> None:
    """Draw a chart with OpenCV primitives: axes, ticks, lines or bars, threshold lines, legend."""
    width, height = size
    canvas = np.full((height, width, 3), 255, np.uint8)
    font, black, grey = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0), (200, 200, 200)
    hbar = any(series.kind == "hbar" for series in chart.series)
    left = 190 if hbar else 80
    right, top, bottom = width - 30, 72, height - 70
    cv2.putText(canvas, _ascii(chart.title), (left, 26), font, 0.65, black, 1, cv2.LINE_AA)

    def finite(values: list[Any]) -> list[float]:
        return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and (not chart.xlog or v > 0)]

    xs = [v for series in chart.series for v in finite(series.x)] + [x for x, _ in chart.vlines]
    x_low, x_high = chart.xrange or (min(xs, default=0.0), max(xs, default=1.0))
    if hbar:
        y_low, y_high = 0.0, float(max(len(series.y) for series in chart.series))
    else:
        ys = [v for series in chart.series for v in finite(series.y)]
        y_low, y_high = chart.yrange or (min(0.0, min(ys, default=0.0)), max(ys, default=1.0) * 1.05 or 1.0)
    if chart.xlog:
        x_low, x_high = math.log10(max(x_low, 1e-12)), math.log10(max(x_high, 1e-11))
    x_high = x_high if x_high > x_low else x_low + 1.0
    y_high = y_high if y_high > y_low else y_low + 1.0

    def px(x: float) -> int:
        value = math.log10(max(x, 1e-12)) if chart.xlog else x
        return int(round(left + (value - x_low) / (x_high - x_low) * (right - left)))

    def py(y: float) -> int:
        return int(round(bottom - (y - y_low) / (y_high - y_low) * (bottom - top)))

    # Grid and ticks.
    x_ticks = [10.0**e for e in range(math.ceil(x_low), math.floor(x_high) + 1)] if chart.xlog else _nice_ticks(x_low, x_high)
    for tick in x_ticks:
        x = px(tick)
        cv2.line(canvas, (x, top), (x, bottom), grey, 1)
        label = f"1e{int(round(math.log10(tick)))}" if chart.xlog else f"{tick:g}"
        cv2.putText(canvas, label, (x - 14, bottom + 20), font, 0.45, black, 1, cv2.LINE_AA)
    if not hbar:
        for tick in _nice_ticks(y_low, y_high):
            y = py(tick)
            cv2.line(canvas, (left, y), (right, y), grey, 1)
            cv2.putText(canvas, f"{tick:g}", (8, y + 5), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (right, bottom), black, 1)
    cv2.putText(canvas, _ascii(chart.xlabel), (left + (right - left) // 2 - 4 * len(chart.xlabel), height - 25), font, 0.5, black, 1, cv2.LINE_AA)
    if chart.ylabel:
        cv2.putText(canvas, _ascii(chart.ylabel), (8, top - 28), font, 0.45, black, 1, cv2.LINE_AA)

    for index, series in enumerate(chart.series):
        color = _hex_to_bgr(PALETTE[index % len(PALETTE)])
        if series.kind == "line":
            points = [
                (px(float(x)), py(float(y)))
                for x, y in zip(series.x, series.y)
                if isinstance(y, (int, float)) and math.isfinite(y) and (not chart.xlog or x > 0)
            ]
            for a, b in zip(points[:-1], points[1:]):
                cv2.line(canvas, a, b, color, 2, cv2.LINE_AA)
            if len(points) == 1:
                cv2.circle(canvas, points[0], 3, color, -1)
        elif series.kind == "bar":
            step = (float(series.x[1]) - float(series.x[0])) if len(series.x) > 1 else (x_high - x_low) / 20
            overlay = canvas.copy()
            for x, y in zip(series.x, series.y):
                cv2.rectangle(overlay, (px(float(x) - step / 2), py(float(y))), (px(float(x) + step / 2), py(0.0)), color, -1)
            canvas[:] = cv2.addWeighted(overlay, 0.55, canvas, 0.45, 0)
        else:
            slot = (bottom - top) / max(len(series.y), 1)
            for row, (value, label) in enumerate(zip(series.x, series.y)):
                y1, y2 = int(top + row * slot + slot * 0.15), int(top + (row + 1) * slot - slot * 0.15)
                cv2.rectangle(canvas, (px(x_low), y1), (px(float(value)), y2), color, -1)
                cv2.putText(canvas, _ascii(str(label))[:22], (8, (y1 + y2) // 2 + 5), font, 0.45, black, 1, cv2.LINE_AA)
                inside = px(float(value)) > right - 60  # a long bar carries its value inside, in white
                anchor = px(float(value)) - 50 if inside else px(float(value)) + 4
                cv2.putText(canvas, f"{float(value):.3f}", (anchor, (y1 + y2) // 2 + 5), font, 0.42, (255, 255, 255) if inside else black, 1, cv2.LINE_AA)
    for index, (x, label) in enumerate(chart.vlines):
        if x is None or not math.isfinite(x):
            continue
        position = px(x)
        for y in range(top, bottom, 12):  # dashed
            cv2.line(canvas, (position, y), (position, min(y + 6, bottom)), (80, 80, 80), 1)
        cv2.putText(canvas, _ascii(label), (position - 4 * len(label), top - 6 - 12 * (index % 2)), font, 0.42, (80, 80, 80), 1, cv2.LINE_AA)
    if not hbar:
        for index, series in enumerate(chart.series):  # legend, top right
            y = top + 18 + 20 * index
            cv2.rectangle(canvas, (right - 190, y - 10), (right - 172, y + 2), _hex_to_bgr(PALETTE[index % len(PALETTE)]), -1)
            cv2.putText(canvas, _ascii(series.name)[:24], (right - 166, y + 1), font, 0.45, black, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"could not write {path}")


def render_png_matplotlib(chart: Chart, path: Path) -> None:
    """The same chart with matplotlib (used when it is installed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9.6, 6.0), dpi=100)
    for index, series in enumerate(chart.series):
        color = PALETTE[index % len(PALETTE)]
        if series.kind == "line":
            axes.plot(series.x, series.y, label=series.name, color=color)
        elif series.kind == "bar":
            step = (series.x[1] - series.x[0]) if len(series.x) > 1 else 0.02
            axes.bar(series.x, series.y, width=step, label=series.name, color=color, alpha=0.55)
        else:
            axes.barh(series.y, series.x, color=color)
            axes.invert_yaxis()
            for row, value in enumerate(series.x):
                axes.text(value, row, f" {value:.3f}", va="center", fontsize=8)
    for x, label in chart.vlines:
        if x is not None and math.isfinite(x):
            axes.axvline(x, linestyle="--", color="#555")
            axes.text(x, axes.get_ylim()[1], f" {label}", va="top", fontsize=8, color="#555")
    if chart.xlog:
        axes.set_xscale("log")
    if chart.xrange:
        axes.set_xlim(*chart.xrange)
    if chart.yrange:
        axes.set_ylim(*chart.yrange)
    axes.set_title(chart.title)
    axes.set_xlabel(chart.xlabel)
    axes.set_ylabel(chart.ylabel)
    axes.grid(alpha=0.3)
    if not any(series.kind == "hbar" for series in chart.series):
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def png_backend() -> str:
    """matplotlib if importable, else kaleido (Plotly's static export), else OpenCV."""
    if importlib.util.find_spec("matplotlib") is not None:
        return "matplotlib"
    if importlib.util.find_spec("kaleido") is not None:
        return "kaleido"
    return "opencv"


def write_pngs(charts: list[Chart], out_dir: Path, backend: str | None = None) -> tuple[list[Path], str]:
    """One PNG per chart; a backend that fails falls back to OpenCV with a warning, never to nothing."""
    backend = backend or png_backend()
    paths = []
    for chart in charts:
        path = out_dir / f"{chart.key}.png"
        try:
            if backend == "matplotlib":
                render_png_matplotlib(chart, path)
            elif backend == "kaleido":
                plotly_figure(chart).write_image(str(path), width=960, height=600)
            else:
                render_png_cv2(chart, path)
        except Exception as error:  # a broken optional backend must not cost the user their plots
            if backend == "opencv":
                raise
            log.warning("PNG backend %s failed for %s (%s); drawing it with OpenCV", backend, chart.key, error)
            backend = "opencv"
            render_png_cv2(chart, path)
        paths.append(path)
    return paths, backend


# --------------------------------------------------------------------------- HTML


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(values: list[float] | None) -> str:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return "n/a"
    return f"[{values[0]:.4f}, {values[1]:.4f}]"


def summary_rows(report: dict) -> list[dict[str, str]]:
    """One row per model: the numbers the terminal table and the HTML summary share."""
    rows = []
    for section in report["models"]:
        verification = section["verification"]
        kfold = verification.get("kfold_accuracy")
        boot = verification["bootstrap_ci95"]
        tars = {entry["far"]: entry["tar"] for entry in verification["tar_at_far"]}
        ood = section.get("ood", {})
        rows.append(
            {
                "model": section["name"],
                "mode": section["mode"],
                "pairs": f"{verification['pairs']} ({verification['genuine_pairs']}+/{verification['impostor_pairs']}-)",
                "no face": str(section["images"]["no_face"]),
                "acc@thr": _fmt(verification.get("accuracy_at_match_threshold")),
                "10-fold acc": f"{kfold['mean']:.4f}±{kfold['std']:.4f}" if kfold else "n/a",
                "acc CI": _ci(boot.get("kfold_accuracy")),
                "AUC": _fmt(verification["roc_auc"]),
                "AUC CI": _ci(boot["roc_auc"]),
                "EER": _fmt(verification["eer"]),
                "EER CI": _ci(boot["eer"]),
                "TAR@1e-2": _fmt(tars.get(1e-2), 3),
                "TAR@1e-3": _fmt(tars.get(1e-3), 3),
                "TAR@1e-4": _fmt(tars.get(1e-4), 3),
                "EDC winner": section["quality"]["winner"] or ("tie: " + ", ".join(section["quality"]["winners"])),
                "OOD AUROC": _fmt(ood.get("auroc_all"), 3) if "auroc_all" in ood else "skipped",
                "img/s": _fmt(section["speed"]["images_per_second"], 1),
                "ms/img": _fmt(section["speed"]["ms_per_image"], 0),
            }
        )
    return rows


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(report: dict, charts: list[Chart], path: Path) -> None:
    """A single self-contained file: plotly.js inline (no CDN, no network), tables, every chart."""
    by_key = {chart.key: chart for chart in charts}
    config = report["config"]
    data = config["dataset"]
    first = True

    def figure_html(key: str) -> str:
        nonlocal first
        if key not in by_key:
            return ""
        include = "inline" if first else False
        first = False
        return plotly_figure(by_key[key]).to_html(full_html=False, include_plotlyjs=include, config={"displaylogo": False})

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>frood eval report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}</style></head><body>",
        "<h1>Face verification evaluation</h1>",
        f"<p>Dataset: <b>{html.escape(data['name'])}</b> ({html.escape(data['source'])}); {data['images']} images, "
        f"{data['pairs']} pairs ({data['genuine_pairs']} genuine, {data['impostor_pairs']} impostor). Models: {html.escape(', '.join(config['models']))}. "
        f"Seed {config['seed']}, {config['n_boot']} bootstrap resamples, date {html.escape(config['date'])}.</p>",
        "<h2>Summary</h2>",
        _html_table(summary_rows(report)),
        "<h2>ROC</h2>",
        figure_html("roc"),
    ]
    for section in report["models"]:
        key = slug(section["name"])
        verification = section["verification"]
        parts.append(f"<h2>{html.escape(section['name'])} <small>({html.escape(section['mode'])})</small></h2>")
        tar_rows = [{"FAR": f"{e['far']:g}", "TAR": _fmt(e["tar"]), "threshold": _fmt(e["threshold"])} for e in verification["tar_at_far"]]
        parts.append(_html_table(tar_rows))
        for note in verification.get("notes", []):
            parts.append(f"<p><i>{html.escape(note)}</i></p>")
        parts.append(figure_html(f"hist-{key}"))
        quality = section["quality"]
        parts.append(f"<h3>Quality: EDC at FMR {quality['fmr']:g} (pair quality = min of the two images)</h3>")
        parts.append(
            _html_table([{"measure": name, "partial AUC 0-20% (lower is better)": _fmt(area, 5)} for name, area in quality["partial_auc_0_20"].items()])
        )
        winner = quality["winner"] or "tie between " + ", ".join(quality["winners"])
        parts.append(f"<p>Lowest (best): <b>{html.escape(winner)}</b>.</p>")
        for note in quality.get("notes", []):
            parts.append(f"<p><i>{html.escape(note)}</i></p>")
        for name, why in quality.get("skipped", {}).items():
            parts.append(f"<p><i>{html.escape(name)}: {html.escape(why)}</i></p>")
        parts.append(figure_html(f"edc-{key}"))
        ood = section.get("ood", {})
        parts.append("<h3>OOD: quality score, clean face vs corrupted copy</h3>")
        if "corruptions" in ood and ood["corruptions"]:
            rows = [
                {
                    "corruption": name,
                    "kind": entry["kind"],
                    "AUROC": _fmt(entry["auroc"]),
                    "mean quality": _fmt(entry["mean_quality"], 3),
                    "no face": f"{entry['no_face']}/{entry['n']}",
                }
                for name, entry in ood["corruptions"].items()
            ]
            rows.append({"corruption": "all (pooled)", "kind": "", "AUROC": _fmt(ood["auroc_all"]), "mean quality": "", "no face": ""})
            parts.append(
                f"<p>{ood['in_distribution']['n']} clean faces, mean quality {ood['in_distribution']['mean_quality']:.3f}; {html.escape(ood['note'])}.</p>"
            )
            parts.append(_html_table(rows))
            parts.append(figure_html(f"ood-{key}"))
        else:
            parts.append(f"<p><i>Skipped: {html.escape(str(ood.get('skipped', 'not run')))}</i></p>")
        speed = section["speed"]
        parts.append(
            f"<p>Speed: {_fmt(speed['images_per_second'], 2)} images/s, {_fmt(speed['ms_per_image'], 1)} ms per image "
            f"(stages, mean ms: {html.escape(', '.join(f'{k} {v:.1f}' for k, v in speed['stage_ms_mean'].items()))}).</p>"
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


# --------------------------------------------------------------------------- terminal, files


def terminal_table(report: dict) -> str:
    """A short fixed-width summary for the terminal: one row per model, then EDC and OOD lines."""
    columns = ["model", "pairs", "no face", "acc@thr", "10-fold acc", "AUC", "AUC CI", "EER", "EER CI", "TAR@1e-2", "TAR@1e-3", "TAR@1e-4", "img/s"]
    rows = summary_rows(report)
    widths = {column: max(len(column), *(len(row[column]) for row in rows)) for column in columns}
    lines = ["  ".join(column.ljust(widths[column]) for column in columns)]
    lines += ["  ".join(row[column].ljust(widths[column]) for column in columns) for row in rows]
    for section in report["models"]:
        quality = section["quality"]
        areas = ", ".join(f"{name} {area:.4f}" for name, area in quality["partial_auc_0_20"].items())
        winner = quality["winner"] or "tie: " + ", ".join(quality["winners"])
        lines.append(f"{section['name']}: EDC pAUC(0-20%) at FMR {quality['fmr']:g}: {areas} -> best {winner}")
        ood = section.get("ood", {})
        if ood.get("corruptions"):
            worst = sorted(ood["corruptions"].items(), key=lambda item: item[1]["auroc"])[:3]
            lines.append(
                f"{section['name']}: OOD AUROC {ood['auroc_all']:.3f} pooled over {len(ood['corruptions'])} corruptions "
                f"({ood['in_distribution']['n']} images); lowest: " + ", ".join(f"{name} {entry['auroc']:.3f}" for name, entry in worst)
            )
        else:
            lines.append(f"{section['name']}: OOD skipped ({ood.get('skipped', 'not run')})")
    return "\n".join(lines)


def write_scores_csv(section: dict, dataset_pairs: list[Any], path: Path) -> None:
    """Per-pair scores, so a reader can look at the pairs behind any number."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_a", "file_b", "genuine", "score"])
        for pair, score in zip(dataset_pairs, section["_scores"]):
            writer.writerow([str(pair.a), str(pair.b), int(pair.genuine), f"{float(score):.6f}"])


def write_reports(report: dict, out_dir: Path | str, dataset_pairs: list[Any] | None = None, png: str | None = None) -> dict[str, Any]:
    """report.json, report.html, one PNG per chart (and per-pair score CSVs); returns what was written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = build_charts(report)
    pngs, backend = write_pngs(charts, out_dir, png)
    report.setdefault("config", {})["png_backend"] = backend
    report["files"] = {"json": "report.json", "html": "report.html", "png": [path.name for path in pngs]}
    score_files = []
    if dataset_pairs is not None:
        for section in report["models"]:
            if "_scores" in section:
                score_path = out_dir / f"scores-{slug(section['name'])}.csv"
                write_scores_csv(section, dataset_pairs, score_path)
                score_files.append(score_path.name)
        report["files"]["scores"] = score_files
    (out_dir / "report.json").write_text(json.dumps(jsonable(report), indent=2, allow_nan=False), encoding="utf-8")
    write_html(report, charts, out_dir / "report.html")
    return {
        "json": out_dir / "report.json",
        "html": out_dir / "report.html",
        "png": pngs,
        "png_backend": backend,
        "scores": [out_dir / name for name in score_files],
    }
