"""`factorcov risk`: the risk report of one portfolio (optionally against a benchmark) at a date.

    factorcov risk --portfolio FILE --date D [--benchmark FILE] [--format table|json|csv]
                   [--drop-unknown]

Exposures are those of D, the factor covariance and specific risk those forecast at D. JSON
keys (exactly): ``date, total_risk, factor_risk, specific_risk, factors, groups,
specific_contribution`` and, with a benchmark, ``active`` (the same keys but ``date`` for
weights minus benchmark weights) and ``beta``. Contributions are Euler (x-sigma-rho)
contributions to total risk: factor contributions plus ``specific_contribution`` add up to
``total_risk`` (`core/portfolio.py`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.api.holdings import load_holdings
from factorcov_pipeline.api.risk_models import load_risk_models, require_forecast
from factorcov_pipeline.core.holdings import align_holdings
from factorcov_pipeline.core.portfolio import RiskSnapshot, beta, decompose


def _section(model: RiskSnapshot, weights: np.ndarray) -> dict[str, Any]:
    d = decompose(model, weights)
    names, group_contrib = d.group_contributions(model.factor_groups)
    return {
        "total_risk": float(d.total[0]),
        "factor_risk": float(d.factor[0]),
        "specific_risk": float(d.specific[0]),
        "factors": [
            {
                "factor": f,
                "factor_group": g,
                "exposure": float(d.exposures[0, k]),
                "contribution": float(d.contributions[0, k]),
            }
            for k, (f, g) in enumerate(zip(model.factors, model.factor_groups, strict=True))
        ],
        "groups": [
            {"factor_group": g, "contribution": float(group_contrib[0, i])}
            for i, g in enumerate(names)
        ],
        "specific_contribution": float(d.specific_contribution[0]),
    }


def risk_report(
    store_read: Any,
    portfolio: str,
    day: dt.date,
    benchmark: str | None = None,
    drop_unknown: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """The JSON-shaped report and notes for stderr (weights dropped)."""
    holdings = load_holdings(portfolio)
    bench = load_holdings(benchmark) if benchmark else None
    require_forecast(store_read, day)
    model = load_risk_models(store_read, day, day)[day]
    notes: list[str] = []
    h = align_holdings(model, holdings, day, portfolio, drop_unknown)
    if h.unknown:
        notes.append(
            f"dropped {len(h.unknown)} asset id(s) not in the model on {day} from {portfolio}, "
            f"weight {h.dropped_weight[0]:.6g}"
        )
    report: dict[str, Any] = {"date": day.isoformat(), **_section(model, h.weights[0])}
    if bench is not None:
        assert benchmark is not None
        b = align_holdings(model, bench, day, benchmark, drop_unknown)
        if b.unknown:
            notes.append(
                f"dropped {len(b.unknown)} asset id(s) not in the model on {day} from "
                f"{benchmark}, weight {b.dropped_weight[0]:.6g}"
            )
        report["active"] = _section(model, h.weights[0] - b.weights[0])
        report["beta"] = float(beta(model, h.weights, b.weights[0])[0])
    return report, notes


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


def format_report(report: dict[str, Any], fmt: str) -> str:
    """The report as ``json`` (one object), ``csv`` (long rows, `_rows`) or a ``table``."""
    if fmt == "json":
        return json.dumps(report, indent=2)
    rows = _rows(report)
    if fmt == "csv":
        buf = io.StringIO()
        fields = ["portfolio", "item", "name", "factor_group", "exposure", "value"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    frame = pl.DataFrame(
        rows,
        schema={
            "portfolio": pl.String,
            "item": pl.String,
            "name": pl.String,
            "factor_group": pl.String,
            "exposure": pl.Float64,
            "value": pl.Float64,
        },
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, float_precision=6):
        return f"risk at {report['date']} (annualised volatilities)\n{frame}"


def run(args: Any, day: dt.date) -> int:
    """The body of `factorcov risk` (cli.py parses the arguments)."""
    from factorcov_pipeline.storage import Store, query_polars

    store = Store.from_env(lock_timeout=args.wait)
    with store.connect(read_only=True) as con:
        report, notes = risk_report(
            lambda sql, params: query_polars(con, sql, params),
            args.portfolio,
            day,
            args.benchmark,
            args.drop_unknown,
        )
    for note in notes:
        print(f"factorcov: note: {note}", file=sys.stderr)
    print(format_report(report, args.format))
    return 0
