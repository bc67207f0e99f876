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
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)


class SettingsError(ValueError):
    """A settings file or value is invalid; the message names the file and the field."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class UniverseSettings(_Settings):
    """Where the asset universe comes from.

    `dataset="synthetic"` (the default) is the embedded synthetic US universe with a planted
    factor model. Any other value is a user dataset: a path to a Parquet or CSV file, or a DuckDB
    file together with `table` (see the README's "Bring your own data").
    """

    dataset: str = "synthetic"
    n_assets: PositiveInt = 3000
    seed: int = 20250331
    table: str | None = None
    factor_returns: str | None = Field(
        default=None,
        description="Path of user-supplied factor returns (date, factor, factor_return); when set "
        "the regression is skipped and only the covariance forecasts are computed.",
    )
    trbc_level: Literal["economic_sector", "industry_group"] = "economic_sector"
    n_extra_styles: Annotated[int, Field(ge=0)] = 0

    @field_validator("dataset")
    @classmethod
    def _dataset_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("universe.dataset must be 'synthetic' or a path to a data file")
        return v


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
    winsorize_sigma: PositiveFloat = 3.0

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
    `return_clip_bounds`: asset returns are clipped to these bounds before the regression (the
    vendor's default is [-0.1, 0.1]); `null` disables clipping.
    `thin_category_shrinkage`: ridge penalty on sector factor returns, relative to the total
    regression weight, so that a sector with very few assets gets a defined, damped factor return.
    """

    estimation_universe: None = None
    zero_sum_constraints: dict[Literal["trbc"], ZeroSumMethod] = Field(
        default_factory=lambda: {"trbc": "mcap_weighted"}
    )
    return_clip_bounds: tuple[float, float] | None = (-0.1, 0.1)
    thin_category_shrinkage: Annotated[float, Field(ge=0.0)] = 0.0

    @field_validator("return_clip_bounds")
    @classmethod
    def _ordered_bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (value[0] < 0.0 < value[1]):
            raise ValueError(f"return_clip_bounds must be (lower < 0 < upper), got {list(value)}")
        return value


class FactorRiskModelSettings(_Settings):
    """The risk model: universe, exposures and model construction (the tutorial's names)."""

    universe: UniverseSettings = Field(default_factory=UniverseSettings)
    exposures: ExposureSettings = Field(default_factory=ExposureSettings)
    modelconstruction: ModelConstructionSettings = Field(default_factory=ModelConstructionSettings)


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

    halflife_vol: PositiveFloat = 60.0
    halflife_cor: PositiveFloat = 120.0
    halflife_vra: PositiveFloat | None = None
    nw_lags_vol: Annotated[int, Field(ge=0, strict=True)] = 0
    nw_lags_vol_halflife_override: PositiveFloat | None = None
    nw_lags_cor: Annotated[int, Field(ge=0, strict=True)] = 0
    shrink_cor_method: ShrinkMethod | None = None
    shrink_cor_length: PositiveFloat | None = None
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


class FactorCovarianceReportSettingsV2(_Settings):
    """The whole report: the risk model and the covariance settings (the tutorial's shape)."""

    factor_model_settings: FactorRiskModelSettings = Field(default_factory=FactorRiskModelSettings)
    factor_cov_settings: FactorCovarianceSettings = Field(default_factory=FactorCovarianceSettings)

    def fingerprint(self) -> str:
        """A canonical JSON of the settings that change stored numbers (the model's identity)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid settings in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a setting)"
        lines.append(f"  - {loc or '<root>'}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


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


def load_settings(path: str | Path | None) -> FactorCovarianceReportSettingsV2:
    """Load a JSON or YAML settings file; `None` gives the tutorial's defaults."""
    if path is None or str(path) == "":
        return FactorCovarianceReportSettingsV2()
    p = Path(path)
    if not p.is_file():
        raise SettingsError(f"settings file not found: {p}")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SettingsError(f"settings file {p} is not valid JSON/YAML: {err}") from None
    return parse_settings(data or {}, source=str(p))
