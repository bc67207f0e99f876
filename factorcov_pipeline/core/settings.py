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
from dataclasses import dataclass
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
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from factorcov_pipeline.core import eigen
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
# The eigenfactor risk adjustment's settings, left out of the printed settings while it is off.
EIGEN_KEYS = ("eigen_adjustment_scale", "eigen_adjustment_simulations", "eigen_adjustment_seed")


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
    - `eigen_adjustment_scale` (a; null = off, the default), `eigen_adjustment_simulations`
      (M) and `eigen_adjustment_seed`: the eigenfactor risk adjustment of the covariance
      (Menchero, Wang and Orr 2011; `core/eigen.py`), applied after Newey-West and before the
      regime adjustment. Not printed while the adjustment is off (they change no number then),
      so the tutorial's nine keys stay exact; all three are printed when it is on.
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
    eigen_adjustment_scale: Annotated[float, Field(ge=0.0, le=eigen.MAX_SCALE)] | None = None
    eigen_adjustment_simulations: Annotated[
        int, Field(ge=eigen.MIN_SIMULATIONS, le=eigen.MAX_SIMULATIONS)
    ] = eigen.DEFAULT_SIMULATIONS
    eigen_adjustment_seed: Annotated[int, Field(ge=0, le=eigen.MAX_SEED)] = eigen.DEFAULT_SEED

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
        """At its default (0) `warmup_length` is left out, and so are the three eigen
        adjustment settings while the adjustment is off (`eigen_adjustment_scale` null: the
        simulation count and seed change no number then): the settings print exactly the
        tutorial's nine keys, and files built before these settings existed keep their
        identity (`fingerprint`). With the adjustment on, all three are printed (and part of
        the identity), defaults included."""
        data = handler(self)
        if isinstance(data, dict) and data.get("warmup_length") == 0:
            del data["warmup_length"]
        if isinstance(data, dict) and data.get("eigen_adjustment_scale", 0) is None:
            for key in EIGEN_KEYS:
                data.pop(key, None)
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


# The covariance model of `factor_cov_settings` itself (issue 22: a file holds several).
DEFAULT_MODEL = "default"
# A model's name: a column value in every per-model table, a suffix of its recursion states'
# keys (`factor_volatility@<name>`) and a command-line argument (`--model NAME`), so a short
# identifier: letters, digits, `_` and `-`, at most MAX_MODEL_NAME characters.
MAX_MODEL_NAME = 40
MODEL_NAME = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_MODEL_NAME}}}$")


def _override_field(name: str) -> tuple[Any, Any]:
    """The field `name` of FactorCovarianceSettings as an override: the same type and bounds
    (strict), but optional: a key left out keeps the file's own `factor_cov_settings` value,
    while an explicit null is a value (`halflife_vra: null` turns the regime adjustment off)."""
    info = FactorCovarianceSettings.model_fields[name]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return annotation, None


class _Overrides(_Settings):
    """Base of `CovarianceModelOverrides`: a partial `factor_cov_settings` whose defaults are
    not validated (an unset key is not a value) and which prints only the keys it was given."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=False, strict=True, allow_inf_nan=False
    )

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k in self.model_fields_set}
        return data

    def given(self) -> dict[str, Any]:
        """The keys the settings file gave, with their validated values."""
        return {k: getattr(self, k) for k in self.model_fields_set}


# One model's entry of `models`: any of the keys of `factor_cov_settings`, each with its type
# and bounds (an unknown key or a wrong type is refused as `models.<name>.<key>`).
CovarianceModelOverrides = create_model(  # type: ignore[call-overload]
    "CovarianceModelOverrides",
    __base__=_Overrides,
    **{name: _override_field(name) for name in FactorCovarianceSettings.model_fields},
)


class FactorCovarianceReportSettingsV2(_Settings):
    """The whole report: the risk model and the covariance settings (the tutorial's shape).

    `models` (issue 22; optional, default none): more covariance models of the same factor
    model, computed beside the one of `factor_cov_settings` (named `default`) in every
    covariance table (their `model` column). Each is a name and a partial
    `factor_cov_settings` merged over the file's own, e.g. `{"eigen":
    {"eigen_adjustment_scale": 1.2}, "fast": {"halflife_vol": 42, "halflife_cor": 84}}`, and
    validated as a whole (`covariance_models`). Not part of `fingerprint`: a model can be added
    to a file; each model's own settings are the file's `covariance_models` table.
    """

    factor_model_settings: FactorRiskModelSettings = Field(default_factory=FactorRiskModelSettings)
    factor_cov_settings: FactorCovarianceSettings = Field(default_factory=FactorCovarianceSettings)
    specific_risk_settings: SpecificRiskSettings = Field(default_factory=SpecificRiskSettings)
    portfolio_risk_settings: PortfolioRiskSettings = Field(default_factory=PortfolioRiskSettings)
    models: dict[str, CovarianceModelOverrides] = Field(default_factory=dict)  # type: ignore[valid-type]

    @field_validator("models", mode="before")
    @classmethod
    def _model_names(cls, value: Any) -> Any:
        """Names first (before their settings): short identifiers, never `default`."""
        if not isinstance(value, dict):
            return value
        for name in value:
            if name == DEFAULT_MODEL:
                raise ValueError(
                    f"'{DEFAULT_MODEL}' is the model of factor_cov_settings and cannot be "
                    "redefined: change factor_cov_settings, or give this model another name"
                )
            if not isinstance(name, str) or not MODEL_NAME.match(name):
                raise ValueError(
                    f"model name {_excerpt(name)} is not a name: use letters, digits, '_' and "
                    f"'-' (at most {MAX_MODEL_NAME} characters)"
                )
        return value

    @model_validator(mode="after")
    def _models_valid_as_a_whole(self) -> FactorCovarianceReportSettingsV2:
        """Each model's settings merged over `factor_cov_settings` pass its own validators
        (`shrink_cor_length` needs a method, ...); refused naming `models.<name>`."""
        self.covariance_models()
        return self

    @model_serializer(mode="wrap")
    def _models_when_given(self, handler: SerializerFunctionWrapHandler) -> Any:
        """`models` is printed only when the file has some: without it the settings print
        (and are stored) exactly as before."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("models"):
            data.pop("models", None)
        return data

    def covariance_models(self) -> dict[str, FactorCovarianceSettings]:
        """Every covariance model, name -> its whole settings, `default` (the
        `factor_cov_settings`) first, then `models` in the file's order."""
        base = {
            k: getattr(self.factor_cov_settings, k) for k in FactorCovarianceSettings.model_fields
        }
        out = {DEFAULT_MODEL: self.factor_cov_settings}
        for name, overrides in self.models.items():
            try:
                out[name] = FactorCovarianceSettings.model_validate({**base, **overrides.given()})
            except ValidationError as err:
                first = err.errors()[0]
                message = str(first.get("ctx", {}).get("error", first["msg"]))
                raise ValueError(f"models.{name}: {message}") from None
        return out

    def model_names(self) -> list[str]:
        """The covariance models' names, `default` first."""
        return [DEFAULT_MODEL, *self.models]

    def for_model(self, name: str) -> FactorCovarianceReportSettingsV2:
        """These settings as the one model `name`: its covariance settings as
        `factor_cov_settings` and no other models (what the per-model assets compute with)."""
        if name == DEFAULT_MODEL and not self.models:
            return self
        return self.model_copy(
            update={"factor_cov_settings": self.covariance_models()[name], "models": {}}
        )

    def model_json(self, name: str) -> str:
        """The canonical JSON of model `name`'s whole covariance settings: its identity in the
        file's `covariance_models` table."""
        return json.dumps(self.covariance_models()[name].model_dump(mode="json"), sort_keys=True)

    def models_json(self) -> dict[str, str]:
        """`model_json` of every model, `default` first."""
        return {
            name: json.dumps(cov.model_dump(mode="json"), sort_keys=True)
            for name, cov in self.covariance_models().items()
        }

    def fingerprint(self) -> str:
        """A canonical JSON of the settings that change stored numbers (the model's identity).

        The blocks added in 0.3 (`specific_risk_settings`, `portfolio_risk_settings`) count only
        when they differ from their defaults, so a file built by 0.2 with the tutorial's settings
        keeps its identity; any non-default value in them is part of it. `models` is not part of
        it (a model may be added to a file; `covariance_models` keeps each model's settings).
        """
        dumped = self.model_dump(mode="json")
        dumped.pop("models", None)
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
        if not loc and e["type"] == "value_error":  # a check of the whole (models.<name>: ...)
            problems.append(str(e.get("ctx", {}).get("error", msg)))
            continue
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


@dataclass(frozen=True)
class _Refused:
    """A value (or key) the loader would not guess at: the walk over the parsed settings
    (`_refuse_marked`) reports it with its field, in one line. Hashable, so it can stand in
    for a mapping key."""

    reason: str
    text: str


# A settings value never needs more digits (the largest bound is 2^63 - 1, 19 digits); Python
# refuses to convert more than 4,300 (a 5,000-digit integer was a traceback).
MAX_INT_DIGITS = 40

# YAML 1.2's core schema (yaml.org/spec/1.2.2, section 10.3.2), the scalars it resolves
# without a tag; everything else plain is a string.
_CORE_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_CORE_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_CORE_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_CORE_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$"
)
_DECIMAL = re.compile(r"^[-+]?[0-9]+$")


class _SettingsLoader(yaml.SafeLoader):
    """Strict YAML 1.2 (the README's promise) without the features a settings file never needs
    and an attacker can abuse.

    PyYAML implements YAML 1.1, whose implicit scalars differ from 1.2's core schema: `yes`,
    `no`, `on`, `off` are booleans, `1:20` is the base-60 integer 80, `017` the octal 15,
    `0b101` 5, `1_000` 1000, `2025-03-31` a date, `<<` merges mappings, while `0o17` and `1e3`
    are strings. Here the implicit resolvers are exactly 1.2's core schema (null, bool, int,
    float; the rest are strings, which a number or boolean setting then refuses with its
    field), and the constructors build 1.2's values: `0o17` is 15, `0x1F` 31, `1e3` 1000.0. An
    integer with a leading zero (`017`: 15 in YAML 1.1, 17 in 1.2) is refused as ambiguous,
    and one of more than MAX_INT_DIGITS digits as out of range, each naming its field. Only the
    core schema's tags exist: `!!timestamp`, `!!binary`, `!!set`, `!!omap`, `!!python/...`
    are refused. Also refused: aliases/anchors (an alias bomb expands to gigabytes), nesting
    deeper than MAX_DEPTH (a RecursionError), duplicate keys (silently the last one wins in
    PyYAML) and keys that are not names (`? [a, b]`, `1:`, `null:`; a list key was a
    TypeError traceback)."""

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
        if not isinstance(node, yaml.MappingNode):
            raise SettingsYAMLError(f"expected a mapping (line {node.start_mark.line + 1})")
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
            else:
                key = _Refused("a key must be a name, not a list or mapping", f"line {line}")
            if not isinstance(key, str | _Refused):
                key = _Refused(f"a key must be a name, got {_excerpt(key)}", f"line {line}")
            if key in mapping:
                raise SettingsYAMLError(f"duplicate key {_excerpt(key)} (line {line})")
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_bool(self, node: Any) -> Any:
        value = self.construct_scalar(node)
        if not _CORE_BOOL.match(value):
            return _Refused("not a YAML 1.2 boolean (true/false)", value)
        return value.lower() == "true"

    def construct_yaml_int(self, node: Any) -> Any:
        value = self.construct_scalar(node)
        if not _CORE_INT.match(value):
            return _Refused("not a YAML 1.2 integer", _excerpt(value))
        if _DECIMAL.match(value):
            digits = value.lstrip("+-")
            if len(digits) > MAX_INT_DIGITS:
                return _Refused(
                    f"an integer of {len(digits):,} digits is out of range", _excerpt(value)
                )
            if len(digits) > 1 and digits[0] == "0":
                return _Refused(
                    "a leading zero is ambiguous (octal in YAML 1.1, decimal in YAML 1.2); "
                    "write the number without it",
                    value,
                )
            return int(value)
        if len(value) > MAX_INT_DIGITS:
            return _Refused(f"an integer of {len(value):,} digits is out of range", _excerpt(value))
        return int(value[2:], 8 if value[1] == "o" else 16)

    def construct_yaml_float(self, node: Any) -> Any:
        value = self.construct_scalar(node)
        if not _CORE_FLOAT.match(value):
            return _Refused("not a YAML 1.2 number", _excerpt(value))
        return float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))


class SettingsYAMLError(ValueError):
    """A settings file uses a JSON/YAML feature settings files refuse."""


_SettingsLoader.yaml_constructors = {
    **{
        f"tag:yaml.org,2002:{tag}": yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{tag}"]
        for tag in ("null", "str", "seq", "map")
    },
    "tag:yaml.org,2002:bool": _SettingsLoader.construct_yaml_bool,
    "tag:yaml.org,2002:int": _SettingsLoader.construct_yaml_int,
    "tag:yaml.org,2002:float": _SettingsLoader.construct_yaml_float,
    None: yaml.SafeLoader.yaml_constructors[
        None
    ],  # any other tag: "could not determine a constructor"
}
_SettingsLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("null", _CORE_NULL, ["~", "n", "N", ""]),
    ("bool", _CORE_BOOL, list("tTfF")),
    ("int", _CORE_INT, list("-+0123456789")),
    ("float", _CORE_FLOAT, list("-+0123456789.")),
):
    _SettingsLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", _pattern, _first)


def _json_int(text: str) -> Any:
    """JSON integers as Python's json module reads them, but one of more than MAX_INT_DIGITS
    digits is reported with its field (Python refuses to convert more than 4,300 digits, a
    traceback before)."""
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        return _Refused(f"an integer of {len(digits):,} digits is out of range", _excerpt(text))
    return int(text)


def _refuse_marked(data: Any, source: str) -> None:
    """Raise a one-line SettingsError for the first `_Refused` value or key in `data`, naming
    its field as pydantic's errors do (`factor_cov_settings.halflife_vol: ...`)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Refused):
            raise SettingsError(
                f"invalid settings in {source}: {path or '<root>'}: {item.reason} (got {item.text})"
            )
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(key, _Refused):
                    raise SettingsError(
                        f"invalid settings in {source}: {path or '<root>'}: {key.reason} "
                        f"({key.text})"
                    )
                stack.append((value, f"{path}.{key}" if path else str(key)))
        elif isinstance(item, list):
            stack.extend((v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(item))


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
            data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_json_int)
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
    if data is None:  # an empty YAML file: the defaults
        data = {}
    _refuse_marked(data, str(p))
    return parse_settings(data, source=str(p))
