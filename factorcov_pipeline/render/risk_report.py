"""`factorcov risk`'s output: the risk report (`RiskReport.to_dict()`) as a table a portfolio
manager reads, as JSON, or as CSV rows.

The table (`render_table`) is drawn by `textgrid.grid`, as `factorcov sql` and `show` are:
names are never shortened (a long factor name folds), a table wider than the terminal splits
into blocks of columns. Risks, volatilities and contributions are annualised and printed in %
(2 decimals), exposures with 4 decimals; no "-0.00" and no "null"; a legend line says what
the short column names mean. Blocks:

1. a summary: total, factor and specific risk, each factor group's contribution and its share
   of total risk (groups: market, style, then the others by name) (with a benchmark, the same for the active portfolio, and the beta);
2. the factors sorted by absolute contribution to total risk: exposure, volatility, marginal
   contribution to risk (d risk / d exposure), contribution and % of total risk; factors with
   zero exposure are left out (and counted) unless ``show_all`` (`--all-factors`);
3. with a benchmark, the same for the active exposures.

JSON is one object (`api/report.py` lists the keys), finite numbers only (`allow_nan=False`).
CSV is long rows ``portfolio, item, name, factor_group, exposure, value`` (items ``summary``,
``factor``, ``group``, ``specific``, ``beta``), every number at full precision.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from factorcov_pipeline.core.holdings import printable
from factorcov_pipeline.render.textgrid import fold, grid

RISK_DECIMALS = 2
EXPOSURE_DECIMALS = 4
SHARE_DECIMALS = 1
BETA_DECIMALS = 4
LEGEND = (
    "contrib: contribution to total risk (contributions add up to it); % risk: share of total "
    "risk; vol: factor volatility; MCTR: marginal contribution to risk, d risk / d exposure "
    "(contrib = exposure x MCTR)"
)


def fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals, never "-0.00" (a value that rounds to zero prints
    as zero)."""
    text = f"{value:.{decimals}f}"
    return f"{0.0:.{decimals}f}" if float(text) == 0.0 else text


def _pct(value: float) -> str:
    return fixed(100.0 * value, RISK_DECIMALS)


def _share(value: float) -> str:
    return fixed(100.0 * value, SHARE_DECIMALS)


def _group_order(group: dict[str, Any]) -> tuple[int, str]:
    """Market, then styles, then the other groups (the category scheme, user factors) by name."""
    name = group["factor_group"] or ""
    return ({"market": 0, "style": 1}.get(name, 2), name)


def _summary(s: dict[str, Any], width: int) -> list[str]:
    total = s["total_risk"]
    factor_contribution = sum(g["contribution"] for g in s["groups"])
    rows = [
        ["total risk", _pct(total), _pct(total), _share(1.0 if total > 0 else 0.0)],
        [
            "factor risk",
            _pct(s["factor_risk"]),
            _pct(factor_contribution),
            _share(factor_contribution / total if total > 0 else 0.0),
        ],
    ]
    rows += [
        [f"  {g['factor_group'] or '(no group)'}", "", _pct(g["contribution"]), _share(g["share"])]
        for g in sorted(s["groups"], key=_group_order)
    ]
    spec = s["specific_contribution"]
    rows.append(
        [
            "specific risk",
            _pct(s["specific_risk"]),
            _pct(spec),
            _share(spec / total if total > 0 else 0.0),
        ]
    )
    return grid(
        ["", "risk", "contrib", "% risk"],
        rows,
        [False, True, True, True],
        width,
        keys=1,
    )


def _factors(s: dict[str, Any], width: int, show_all: bool, title: str) -> list[str]:
    ordered = sorted(s["factors"], key=lambda f: (-abs(f["contribution"]), f["factor"]))
    shown = [f for f in ordered if show_all or f["exposure"] != 0.0]
    hidden = len(ordered) - len(shown)
    note = (
        f" ({hidden} factor(s) with zero exposure not shown; --all-factors shows them)"
        if hidden
        else ""
    )
    out = fold(title + note, width)
    rows = [
        [
            f["factor"],
            f["factor_group"] or "",
            fixed(f["exposure"], EXPOSURE_DECIMALS),
            _pct(f["volatility"]),
            _pct(f["marginal_contribution"]),
            _pct(f["contribution"]),
            _share(f["share"]),
        ]
        for f in shown
    ]
    out += grid(
        ["factor", "group", "exposure", "vol", "MCTR", "contrib", "% risk"],
        rows,
        [False, False, True, True, True, True, True],
        width,
        keys=2,
    )
    return out


def render_table(
    report: dict[str, Any],
    width: int,
    *,
    portfolio: str,
    benchmark: str | None = None,
    location: str = "",
    show_all: bool = False,
) -> str:
    """The report (`RiskReport.to_dict()`) as text of at most ``width`` columns."""
    head = f"Risk of {printable(portfolio)} on {report['date']} (annualised, in %)"
    if location:
        head += f"; model stored in {printable(location)}"
    out = fold(head, width)
    out += fold(LEGEND, width)
    out += ["", *_summary(report, width)]
    active = report.get("active")
    if active is not None:
        out += ["", *fold(f"Active risk against {printable(benchmark)}", width)]
        out += _summary(active, width)
        out += fold(
            f"beta of the portfolio to the benchmark: {fixed(report['beta'], BETA_DECIMALS)}",
            width,
        )
    out += ["", *_factors(report, width, show_all, "Factors by contribution to total risk")]
    if active is not None:
        out += [
            "",
            *_factors(active, width, show_all, "Active factors by contribution to active risk"),
        ]
    return "\n".join(out) + "\n"


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """CSV rows: ``portfolio`` (portfolio or active), ``item`` (summary, factor, group,
    specific, beta), ``name``, ``factor_group``, ``exposure``, ``value``."""
    out: list[dict[str, Any]] = []
    sections = [("portfolio", report)] + (
        [("active", report["active"])] if "active" in report else []
    )
    for label, s in sections:
        for key in ("total_risk", "factor_risk", "specific_risk"):
            out.append({"portfolio": label, "item": "summary", "name": key, "value": s[key]})
        for f in s["factors"]:
            out.append(
                {
                    "portfolio": label,
                    "item": "factor",
                    "name": f["factor"],
                    "factor_group": f["factor_group"],
                    "exposure": f["exposure"],
                    "value": f["contribution"],
                }
            )
        for g in s["groups"]:
            out.append(
                {
                    "portfolio": label,
                    "item": "group",
                    "name": g["factor_group"],
                    "value": g["contribution"],
                }
            )
        out.append(
            {
                "portfolio": label,
                "item": "specific",
                "name": "specific_contribution",
                "value": s["specific_contribution"],
            }
        )
    if "beta" in report:
        out.append(
            {"portfolio": "portfolio", "item": "beta", "name": "beta", "value": report["beta"]}
        )
    return out


def render_json(report: dict[str, Any]) -> str:
    """One JSON object; a non-finite number is an error here, never ``NaN`` in the output."""
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    """The long CSV rows (module docstring), floats at full precision."""
    buf = io.StringIO()
    fields = ["portfolio", "item", "name", "factor_group", "exposure", "value"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows(report))
    return buf.getvalue()
