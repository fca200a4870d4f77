"""Python steps for the market-research demo: load the (illustrative) data, draw charts.

Registered with ``@orchestra_nb.task_function`` so a plan can name them
(``"kind": "python", "function": "market_size_chart"``). The notebook imports this
module; so does ``orchestra-nb run --functions notebooks/market_research.py``.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import orchestra_nb as onb

DATA = Path(__file__).parent / "data"


def _rows(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key, value in row.items():
            with contextlib.suppress(ValueError):
                row[key] = float(value) if "." in value else int(value)
    return rows


@onb.task_function
def load_market_data() -> dict[str, Any]:
    """Load the illustrative market-size and competitor tables (JSON records)."""
    return {
        "note": "illustrative data for the demo, not real figures",
        "market_size": _rows("market_size.csv"),
        "competitors": _rows("competitors.csv"),
    }


def _data(inputs: dict[str, Any]) -> dict[str, Any]:
    for value in inputs.values():
        if isinstance(value, dict) and "market_size" in value:
            return value
    return load_market_data()


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 3.6), dpi=100)


@onb.task_function
def market_size_chart(inputs: dict[str, Any]) -> onb.Image:
    """Draw solid-state battery demand by region and year as a stacked bar chart (PNG)."""
    rows = _data(inputs)["market_size"]
    years = sorted({r["year"] for r in rows})
    regions = sorted({r["region"] for r in rows})
    fig, ax = _figure()
    bottom = [0.0] * len(years)
    for region in regions:
        values = [
            next((r["gwh"] for r in rows if r["year"] == y and r["region"] == region), 0)
            for y in years
        ]
        ax.bar([str(y) for y in years], values, bottom=bottom, label=region)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("GWh per year")
    ax.set_title("Solid-state battery demand by region (illustrative)")
    ax.legend(frameon=False)
    fig.tight_layout()
    return onb.Image.from_figure(fig)


@onb.task_function
def competitor_chart(inputs: dict[str, Any]) -> onb.Image:
    """Plot competitors by energy density and cost, sized by pilot capacity (PNG)."""
    rows = _data(inputs)["competitors"]
    fig, ax = _figure()

    def area(gwh: float) -> float:  # bubble area in points², proportional to capacity
        return 150 * gwh

    for r in rows:
        ax.scatter(
            r["cost_usd_kwh"],
            r["energy_density_wh_kg"],
            s=area(r["pilot_capacity_gwh"]),
            alpha=0.6,
        )
        ax.annotate(
            r["company"],
            (r["cost_usd_kwh"], r["energy_density_wh_kg"]),
            textcoords="offset points",
            xytext=(7, 5),
            fontsize=8,
        )
    # room around the outermost bubbles, so no label reaches the frame
    ax.margins(x=0.18, y=0.16)
    sizes = [0.5, 1.0, 2.0]
    handles = [ax.scatter([], [], s=area(g), color="#9ca3af", alpha=0.6) for g in sizes]
    ax.legend(
        handles,
        [f"{g:g} GWh" for g in sizes],
        title="pilot capacity",
        title_fontsize=8,
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        labelspacing=1.3,
        borderpad=1.0,
    )
    ax.set_xlabel("cell cost, USD/kWh (lower is better)")
    ax.set_ylabel("energy density, Wh/kg")
    ax.set_title("Who leads on density and cost (illustrative)")
    fig.tight_layout()
    return onb.Image.from_figure(fig)
