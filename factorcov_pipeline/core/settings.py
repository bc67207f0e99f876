"""Typed settings whose names, nesting and defaults follow the vendor tutorial.

The tutorial builds `FactorCovarianceReportSettingsV2(factor_model_settings=FactorRiskModelSettings(
universe=UniverseSettings(...), exposures=ExposureSettings(...), modelconstruction=
ModelConstructionSettings(...)))` and prints `factor_cov_settings` as JSON with nine keys. The
models below keep those class names, field names and defaults; what the tutorial does not show
(synthetic universe size, winsorising, return clipping) is added with documented defaults.

A JSON or YAML file of the shape `{"factor_model_settings": {...}, "factor_cov_settings": {...}}`
replaces the defaults; keys it leaves out keep their defaults; unknown keys and wrong types are
refused with a message naming the field (pydantic's `extra="forbid"` and strict validation).
"""

from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictFloat,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from factorcov_pipeline.core.factors import factor_set_for


class SettingsError(ValueError):
    """A settings file or value is invalid; the message names the file and the field."""


class _Settings(BaseModel):
    # strict: no loose conversions ("yes" is not a bool, "60" not a number, true not an int);
    # allow_inf_nan=False: `Infinity`/`NaN` (which Python's json module accepts) are refused.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False
    )


# Sane bounds of every setting (documented in the README's settings table). Half-lives in
# sessions: 0.5 (a day's weight halves twice a session) to 1e15, which is equal weights to
# machine precision (the tests' stand-in for an equal-weighted sample); beyond about 1e16 the
# decay 2^(-1/h) rounds to 1 and the EWMA divides by zero (halflife 1e300 did, mid-run).
# Newey-West lags: at most a quarter of sessions (each lag is a K x K term per date). A path
# or name is at most 4,096 characters.
HALFLIFE = Field(ge=0.5, le=1e15)
NW_LAGS = Field(ge=0, le=63)
MAX_TEXT = 4096
MAX_ASSETS = 100_000
MIN_ASSETS_PER_FACTOR = 2


class UniverseSettings(_Settings):
    """Where the asset universe comes from.

    `dataset="synthetic"` (the default) is the embedded synthetic US universe with a planted
    factor model. Any other value is a user dataset: a path to a Parquet or CSV file, or a DuckDB
    file together with `table` (see the README's "Bring your own data").
    """

    dataset: Annotated[str, Field(max_length=MAX_TEXT)] = "synthetic"
    n_assets: Annotated[int, Field(ge=1, le=MAX_ASSETS)] = 3000
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 20250331
    table: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    factor_returns: Annotated[str, Field(max_length=MAX_TEXT)] | None = Field(
        default=None,
        description="Path of user-supplied factor returns (date, factor, factor_return); when set "
        "the regression is skipped and only the covariance forecasts are computed.",
    )
    trbc_level: Literal["economic_sector", "industry_group"] = "economic_sector"
    n_extra_styles: Annotated[int, Field(ge=0, le=100)] = 0

    @field_validator("dataset")
    @classmethod
    def _dataset_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("universe.dataset must be 'synthetic' or a path to a data file")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> UniverseSettings:
        if self.factor_returns is not None and self.dataset != "synthetic":
            raise ValueError(
                "set either dataset (asset data: the regression estimates factor returns) or "
                "factor_returns (your own factor returns: no regression), not both"
            )
        return self


def _unique_names(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("factors: give at least one name, or leave it out (null) for all")
    if len(set(value)) != len(value):
        raise ValueError(f"factors: names must be unique, got {value}")
    return value


class ContinuousExposureGroupSettings(_Settings):
    """A group of continuous exposures: `market` (1 for every asset) or `style` (standardised).

    `factors` (style group only): the subset of style factors the model keeps, for user data
    that lacks some descriptors (e.g. the S&P 500 example has no Dividend/Growth/Leverage/Value
    data: an all-zero exposure would give a factor return of 0 and a 0/0 correlation). `null`
    (the tutorial's default) keeps all of them.
    """

    exposure_type: Literal["continuous"] = "continuous"
    hierarchy: Literal["market", "style"]
    factors: list[str] | None = None

    @field_validator("factors")
    @classmethod
    def _factors_unique(cls, value: list[str] | None) -> list[str] | None:
        return _unique_names(value)

    @model_validator(mode="after")
    def _factors_only_for_styles(self) -> ContinuousExposureGroupSettings:
        if self.factors is not None and self.hierarchy != "style":
            raise ValueError("factors: only the 'style' group takes a subset of factors")
        return self


class CategoricalExposureGroupSettings(_Settings):
    """A group of 0/1 dummies, one per category of `hierarchy` (`trbc`: the TRBC sectors).

    `factors`: the subset of categories (TRBC sectors, or industry groups) the model keeps, for
    user data in which some categories have no assets at all (a sector factor without assets
    has no defined return). `null` (the tutorial's default) keeps all of them; a dataset row
    whose sector is not in the subset is refused as an unknown sector.
    """

    exposure_type: Literal["categorical"] = "categorical"
    hierarchy: Literal["trbc"]
    factors: list[str] | None = None

    @field_validator("factors")
    @classmethod
    def _factors_unique(cls, value: list[str] | None) -> list[str] | None:
        return _unique_names(value)


def _exposure_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "exposure_type" in value:
            return str(value["exposure_type"])
        return "categorical" if value.get("hierarchy") == "trbc" else "continuous"
    return str(getattr(value, "exposure_type", "continuous"))


def _default_exposure_groups() -> list[
    ContinuousExposureGroupSettings | CategoricalExposureGroupSettings
]:
    return [
        ContinuousExposureGroupSettings(hierarchy="market"),
        CategoricalExposureGroupSettings(hierarchy="trbc"),
        ContinuousExposureGroupSettings(hierarchy="style"),
    ]


class ExposureSettings(_Settings):
    """Which exposure groups make up the model, and how style descriptors are standardised.

    Styles are z-scored cross-sectionally with the cap-weighted mean and the equal-weighted
    standard deviation (the Barra USE4 convention, Menchero, Orr and Wang 2011, section 3),
    clipped at +/- `winsorize_sigma`, then z-scored again.
    """

    exposures: list[ContinuousExposureGroupSettings | CategoricalExposureGroupSettings] = Field(
        default_factory=_default_exposure_groups
    )
    winsorize_sigma: Annotated[float, Field(ge=1.0, le=10.0)] = 3.0

    @field_validator("exposures", mode="before")
    @classmethod
    def _pick_group_kind(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, dict):
                kind = _exposure_kind(item)
                model = (
                    CategoricalExposureGroupSettings
                    if kind == "categorical"
                    else ContinuousExposureGroupSettings
                )
                out.append(model.model_validate(item))
            else:
                out.append(item)
        return out

    @field_validator("exposures")
    @classmethod
    def _market_trbc_style(
        cls, value: list[ContinuousExposureGroupSettings | CategoricalExposureGroupSettings]
    ) -> list[ContinuousExposureGroupSettings | CategoricalExposureGroupSettings]:
        hierarchies = [g.hierarchy for g in value]
        if len(set(hierarchies)) != len(hierarchies):
            raise ValueError(f"exposures: each hierarchy may appear once, got {hierarchies}")
        if "trbc" not in hierarchies:
            raise ValueError("exposures: the model needs the 'trbc' categorical group")
        return value

    def has(self, hierarchy: str) -> bool:
        return any(g.hierarchy == hierarchy for g in self.exposures)

    def subset(self, hierarchy: str) -> list[str] | None:
        """The `factors` subset of the group `hierarchy` (None: all of its factors)."""
        for g in self.exposures:
            if g.hierarchy == hierarchy:
                return g.factors
        return None


ZeroSumMethod = Literal["mcap_weighted", "equal_weighted"]


class ModelConstructionSettings(_Settings):
    """How the daily cross-sectional regression is set up.

    `zero_sum_constraints={"trbc": "mcap_weighted"}`: the cap-weighted sum of the sector factor
    returns is zero, which removes the collinearity between the sector dummies and Market.
    `return_clip_mad` (default 15): asset returns are clipped, date by date, to median +/-
    c x 1.4826 x MAD of that date's returns (the robust scale the style descriptors use,
    core/exposures.py) before the regression; `null`: off. Bounds 2-100: below 2 robust
    standard deviations the clip would touch about 5% of normal returns, no longer outliers
    only. Left out of the settings' JSON when null, so a file built before the setting
    existed keeps its identity (`fingerprint`) under the settings it was built with.
    `return_clip_bounds` (default null): fixed bounds, applied after the relative clip when
    both are set. The vendor's default, and ours up to 0.8.0, is [-0.1, 0.1] without a
    relative clip; on real data it cut the market's own move on crisis days and forecast
    risk worse after them (docs/return-clipping.md: the evidence for both defaults).
    `thin_category_shrinkage`: ridge penalty on sector factor returns, relative to the total
    regression weight, so that a sector with very few assets gets a defined, damped factor return.
    """

    estimation_universe: None = None
    zero_sum_constraints: dict[Literal["trbc"], ZeroSumMethod] = Field(
        default_factory=lambda: {"trbc": "mcap_weighted"}
    )
    # A JSON/YAML list is accepted for the pair (lax on the container only); its elements
    # are strict numbers.
    return_clip_bounds: Annotated[tuple[StrictFloat, StrictFloat], Field(strict=False)] | None = (
        None
    )
    return_clip_mad: Annotated[float, Field(ge=2.0, le=100.0)] | None = 15.0
    thin_category_shrinkage: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0

    @model_serializer(mode="wrap")
    def _omit_unset_mad_clip(self, handler: SerializerFunctionWrapHandler) -> Any:
        """`return_clip_mad` is left out while null: the settings' JSON, and so the identity
        of a file built before the setting existed, stay as they were."""
        data = handler(self)
        if isinstance(data, dict) and data.get("return_clip_mad", 0.0) is None:
            del data["return_clip_mad"]
        return data

    @field_validator("return_clip_bounds")
    @classmethod
    def _ordered_bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (-1.0 <= value[0] < 0.0 < value[1] <= 10.0):
            raise ValueError(
                f"return_clip_bounds must be (-1 <= lower < 0 < upper <= 10), got {list(value)}"
            )
        return value


class FactorRiskModelSettings(_Settings):
    """The risk model: universe, exposures and model construction (the tutorial's names)."""

    universe: UniverseSettings = Field(default_factory=UniverseSettings)
    exposures: ExposureSettings = Field(default_factory=ExposureSettings)
    modelconstruction: ModelConstructionSettings = Field(default_factory=ModelConstructionSettings)

    @model_validator(mode="after")
    def _factors_known_and_universe_large_enough(self) -> FactorRiskModelSettings:
        """At parse time, not mid-run: every `factors` subset name is one of its group's
        factors (exact case), `n_extra_styles` exists, and a synthetic universe has at least
        MIN_ASSETS_PER_FACTOR assets per factor (fewer leave the regression without residual
        degrees of freedom: `n_assets: 1` stored zero forecasts and reported success)."""
        factors = factor_set_for(self)  # ValueError naming the unknown names
        uni = self.universe
        if uni.dataset == "synthetic" and uni.factor_returns is None:
            need = MIN_ASSETS_PER_FACTOR * factors.k
            if uni.n_assets < need:
                raise ValueError(
                    f"universe.n_assets={uni.n_assets} is too small for a model of {factors.k} "
                    f"factors: give at least {need} ({MIN_ASSETS_PER_FACTOR} per factor)"
                )
        return self


ShrinkMethod = Literal["LIS", "QIS", "GIS"]


class FactorCovarianceSettings(_Settings):
    """The nine covariance settings the tutorial prints, with its defaults.

    - `halflife_vol`, `halflife_cor`: half-lives (in sessions) of the EWMA of squared factor
      returns and of their outer products (pandas `ewm(halflife=...)`, adjusted, no demeaning).
    - `halflife_vra`: half-life of the volatility regime adjustment (USE4 eq. 4.3-4.5); null: off.
    - `nw_lags_vol`, `nw_lags_cor`: Newey-West lags (Bartlett weights) on the variances and on
      the correlation matrix; `nw_lags_vol_halflife_override`: half-life of the lagged variance
      terms when set.
    - `shrink_cor_method`, `shrink_cor_length`: Ledoit-Wolf LIS/QIS/GIS shrinkage of the
      correlation matrix with this sample length (null: the EWMA's effective number of
      observations).
    - `combine_standardized`: combine the correlation with one of returns standardised by their
      prior-day volatility forecast.
    - `warmup_length` (not one of the tutorial's nine; default 0 = the tutorial's behaviour):
      sessions with returns before forecasts are published; the regime adjustment starts
      after them.
    """

    halflife_vol: Annotated[float, HALFLIFE] = 60.0
    halflife_cor: Annotated[float, HALFLIFE] = 120.0
    halflife_vra: Annotated[float, HALFLIFE] | None = None
    nw_lags_vol: Annotated[int, NW_LAGS] = 0
    nw_lags_vol_halflife_override: Annotated[float, HALFLIFE] | None = None
    nw_lags_cor: Annotated[int, NW_LAGS] = 0
    shrink_cor_method: ShrinkMethod | None = None
    shrink_cor_length: Annotated[float, Field(ge=2.0, le=1e6)] | None = None
    combine_standardized: bool = False
    warmup_length: Annotated[int, Field(ge=0, strict=True)] = 0

    @model_validator(mode="after")
    def _length_needs_method(self) -> FactorCovarianceSettings:
        if self.shrink_cor_length is not None and self.shrink_cor_method is None:
            raise ValueError(
                "shrink_cor_length is set but shrink_cor_method is null: "
                "choose one of 'LIS', 'QIS', 'GIS' or drop shrink_cor_length"
            )
        if self.nw_lags_vol_halflife_override is not None and self.nw_lags_vol == 0:
            raise ValueError(
                "nw_lags_vol_halflife_override is set but nw_lags_vol is 0: "
                "the override applies to the lagged volatility terms only"
            )
        return self

    @model_serializer(mode="wrap")
    def _tutorial_keys_when_default(self, handler: SerializerFunctionWrapHandler) -> Any:
        """At its default (0) `warmup_length` is left out: the settings print exactly the
        tutorial's nine keys, and files built before the setting existed keep their identity
        (`fingerprint`)."""
        data = handler(self)
        if isinstance(data, dict) and data.get("warmup_length") == 0:
            del data["warmup_length"]
        return data

    def non_default(self) -> dict[str, Any]:
        """The settings that differ from the tutorial's defaults (for messages and metadata)."""
        default = FactorCovarianceSettings()
        return {k: v for k, v in self.model_dump().items() if getattr(default, k) != v}


class SpecificRiskSettings(_Settings):
    """Specific risk forecasts (`core/specific_risk.py`, Barra USE4 notes section 5).

    Defaults calibrated on the synthetic planted model (README, "Specific risk"): with them the
    median per-asset standard deviation of the standardised next-day specific returns is within
    1 +/- 0.1 after the first third of the tutorial's year (tests/test_specific_risk_pipeline.py).

    - `halflife`: half-life (sessions) of the EWMA of squared specific returns.
    - `nw_lags`: Newey-West lags (Bartlett) on each asset's variance (the synthetic residuals are
      serially independent, so 0).
    - `halflife_vra`: half-life of the specific volatility regime adjustment (USE4 5.4); null: off.
    - `shrink_intensity`: q of the Bayesian shrinkage toward the size group's cap-weighted mean
      (USE4 5.3; USE4 uses 0.1); 0: off.
    - `shrink_size_groups`: number of equal-count size groups (deciles).
    - `min_history`, `full_history`: observations below which an asset's own history gets no
      weight and from which it gets full weight (USE4 5.2 blending; USE4: 60 and 180 days).
    - `structural_model`: the structural forecast regresses ln volatility on exposures; false:
      the cap-weighted mean volatility of assets with history stands in for it.
    """

    halflife: Annotated[float, HALFLIFE] = 84.0
    nw_lags: Annotated[int, NW_LAGS] = 0
    halflife_vra: Annotated[float, HALFLIFE] | None = 42.0
    shrink_intensity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    shrink_size_groups: Annotated[int, Field(ge=1, le=100)] = 10
    min_history: Annotated[int, Field(ge=0, le=10_000)] = 20
    full_history: Annotated[int, Field(ge=1, le=10_000)] = 60
    structural_model: bool = True

    @model_validator(mode="after")
    def _history_ordered(self) -> SpecificRiskSettings:
        if self.full_history <= self.min_history:
            raise ValueError(
                f"full_history ({self.full_history}) must exceed min_history ({self.min_history})"
            )
        return self


class PortfolioRiskSettings(_Settings):
    """Standing portfolios whose risk the `portfolio_risk` asset reports every session.

    - `holdings`: a CSV or Parquet file, or a DuckDB file together with `table`, with columns
      `portfolio, asset_id, weight` (weights as given, not renormalised); null: no standing
      portfolios.
    - `benchmark`: the name of one portfolio of the holdings used as the benchmark of all the
      others (active risk and beta); null: none.
    - `drop_unknown`: leave out holdings whose asset is not in the model on a date (their weight
      is reported in the metadata) instead of failing.
    """

    holdings: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    table: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    benchmark: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    drop_unknown: bool = False


class FactorCovarianceReportSettingsV2(_Settings):
    """The whole report: the risk model and the covariance settings (the tutorial's shape)."""

    factor_model_settings: FactorRiskModelSettings = Field(default_factory=FactorRiskModelSettings)
    factor_cov_settings: FactorCovarianceSettings = Field(default_factory=FactorCovarianceSettings)
    specific_risk_settings: SpecificRiskSettings = Field(default_factory=SpecificRiskSettings)
    portfolio_risk_settings: PortfolioRiskSettings = Field(default_factory=PortfolioRiskSettings)

    def fingerprint(self) -> str:
        """A canonical JSON of the settings that change stored numbers (the model's identity).

        The blocks added in 0.3 (`specific_risk_settings`, `portfolio_risk_settings`) count only
        when they differ from their defaults, so a file built by 0.2 with the tutorial's settings
        keeps its identity; any non-default value in them is part of it.
        """
        dumped = self.model_dump(mode="json")
        for block in ("specific_risk_settings", "portfolio_risk_settings"):
            if dumped[block] == type(getattr(self, block))().model_dump(mode="json"):
                del dumped[block]
        return json.dumps(dumped, sort_keys=True)


def _excerpt(value: Any) -> str:
    """A short repr of a value for an error message: a 50 MB string or a huge list is quoted
    as its first characters / items only."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4
_REPR.maxlevel = 2


def _format_validation_error(err: ValidationError, source: str) -> str:
    """One line: the file, then each invalid field with what is wrong and a short excerpt of
    the value given."""
    problems = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a setting)"
        got = f" (got {_excerpt(e.get('input'))})" if e["type"] != "missing" else ""
        problems.append(f"{loc or '<root>'}: {msg}{got}")
    more = f"; and {err.error_count() - 5} more" if err.error_count() > 5 else ""
    return f"invalid settings in {source}: " + "; ".join(problems) + more


def parse_settings(
    data: dict[str, Any], source: str = "settings"
) -> FactorCovarianceReportSettingsV2:
    """Validate a mapping of the tutorial's report-settings shape; errors name the field."""
    if not isinstance(data, dict):
        raise SettingsError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return FactorCovarianceReportSettingsV2.model_validate(data)
    except ValidationError as err:
        raise SettingsError(_format_validation_error(err, source)) from None


# Loading safety (issue 12.7): a settings file is a few hundred bytes of plain JSON/YAML.
MAX_SETTINGS_BYTES = 1_000_000
MAX_DEPTH = 20


class _SettingsLoader(yaml.SafeLoader):
    """YAML without the features a settings file never needs and an attacker can abuse:
    aliases/anchors (an alias bomb expands to gigabytes), nesting deeper than MAX_DEPTH (a
    RecursionError), duplicate keys (silently the last one wins in PyYAML), and YAML 1.1's
    `yes`/`no`/`on`/`off` booleans (only `true`/`false` are booleans, as in YAML 1.2 and JSON)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SettingsYAMLError(
                f"YAML aliases are not allowed (line {event.start_mark.line + 1})"
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise SettingsYAMLError(
                f"YAML anchors are not allowed (line {event.start_mark.line + 1})"
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SettingsYAMLError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SettingsYAMLError(
                    f"duplicate key {_excerpt(key)} (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class SettingsYAMLError(ValueError):
    """A settings file uses a JSON/YAML feature settings files refuse."""


_SettingsLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SettingsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SettingsYAMLError(f"duplicate key {_excerpt(key)}")
        out[key] = value
    return out


def _depth(data: Any) -> int:
    """The nesting depth of parsed JSON (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _read_text(p: Path) -> str:
    """The file's text, or a one-line SettingsError saying what it is instead."""
    if p.is_dir():
        raise SettingsError(f"settings file {p} is a directory, not a JSON/YAML file")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SETTINGS_BYTES + 1)
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {p}") from None
    except OSError as err:
        raise SettingsError(f"settings file {p} cannot be read: {err.strerror}") from None
    if len(raw) > MAX_SETTINGS_BYTES:
        raise SettingsError(
            f"settings file {p} is larger than {MAX_SETTINGS_BYTES:,} bytes; a settings file "
            "is a few hundred bytes of JSON/YAML"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SettingsError(
            f"settings file {p} is not UTF-8 text (byte {err.start}: {raw[err.start : err.start + 4]!r});"
            " save it as UTF-8"
        ) from None


def load_settings(path: str | Path | None) -> FactorCovarianceReportSettingsV2:
    """Load a JSON or YAML settings file; `None` gives the tutorial's defaults."""
    if path is None or str(path) == "":
        return FactorCovarianceReportSettingsV2()
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise SettingsError(f"settings file not found: {p}")
    text = _read_text(p)
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_no_duplicates)
            if _depth(data) > MAX_DEPTH:
                raise SettingsYAMLError(f"nested deeper than {MAX_DEPTH} levels")
        else:
            data = yaml.load(text, Loader=_SettingsLoader)
    except RecursionError:
        raise SettingsError(f"settings file {p}: nested deeper than {MAX_DEPTH} levels") from None
    except SettingsYAMLError as err:
        raise SettingsError(f"settings file {p}: {err}") from None
    except json.JSONDecodeError as err:
        raise SettingsError(
            f"settings file {p} is not valid JSON: {err.msg} (line {err.lineno}, "
            f"column {err.colno})"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise SettingsError(f"settings file {p} is not valid YAML: {problem}{where}") from None
    return parse_settings(data or {}, source=str(p))
