"""Factor names and groups of the tutorial's risk model (Market + 13 TRBC sectors + 7 styles).

Names are exactly those of the vendor tutorial (`factor-covariance-tutorial.txt`): its factor
return columns are `market.Market`, `style.<Style>` and `trbc.<Sector>`; we store the part after
the dot as `factor` and the part before it as `factor_group`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class _UniverseSettings(Protocol):
    n_extra_styles: int
    trbc_level: str


class _ExposureSettings(Protocol):
    def has(self, group: str, /) -> bool: ...

    def subset(self, group: str, /) -> Sequence[str] | None: ...


class ModelSettings(Protocol):
    """What `factor_set_for` reads of the risk-model settings (`core.settings.
    FactorRiskModelSettings`), typed structurally so that this module, which the settings
    validate against, does not import them."""

    @property
    def universe(self) -> _UniverseSettings: ...

    @property
    def exposures(self) -> _ExposureSettings: ...


MARKET_FACTOR = "Market"

STYLE_FACTORS: tuple[str, ...] = (
    "Dividend",
    "Growth",
    "Leverage",
    "Momentum",
    "Size",
    "Value",
    "Volatility",
)

# The 13 TRBC economic sectors of the tutorial, alphabetical.
TRBC_SECTORS: tuple[str, ...] = (
    "Academic & Educational Services",
    "Basic Materials",
    "Consumer Cyclicals",
    "Consumer Non-Cyclicals",
    "Energy",
    "Financials",
    "Government Activity",
    "Healthcare",
    "Industrials",
    "Institutions, Associations & Organizations",
    "Real Estate",
    "Technology",
    "Utilities",
)

GROUP_MARKET = "market"
GROUP_TRBC = "trbc"
GROUP_STYLE = "style"


@dataclass(frozen=True)
class FactorSet:
    """The ordered factors of a model: Market, then styles, then sectors (the tutorial's order).

    `names[k]` is factor k in every array of shape (..., K) in the core; `groups[k]` its group.
    """

    names: tuple[str, ...]
    groups: tuple[str, ...]

    @classmethod
    def build(
        cls,
        sectors: Sequence[str] = TRBC_SECTORS,
        styles: Sequence[str] = STYLE_FACTORS,
        market: bool = True,
    ) -> FactorSet:
        names: list[str] = []
        groups: list[str] = []
        if market:
            names.append(MARKET_FACTOR)
            groups.append(GROUP_MARKET)
        names.extend(styles)
        groups.extend([GROUP_STYLE] * len(styles))
        names.extend(sectors)
        groups.extend([GROUP_TRBC] * len(sectors))
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"factor names must be unique; repeated: {dupes}")
        return cls(tuple(names), tuple(groups))

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(n for n, g in zip(self.names, self.groups, strict=True) if g == GROUP_STYLE)

    @property
    def sectors(self) -> tuple[str, ...]:
        return tuple(n for n, g in zip(self.names, self.groups, strict=True) if g == GROUP_TRBC)

    def indices(self, group: str) -> list[int]:
        return [i for i, g in enumerate(self.groups) if g == group]


DEFAULT_FACTORS = FactorSet.build()


# Refinitiv TRBC (2020 scheme) industry groups -> their economic sector. A realistic subset of
# 52 groups (the thinnest groups of the full scheme are left out); every one of the 13 economic
# sectors has at least one group. The three tiny sectors have a single group of the same name,
# as in TRBC. Used as the categories when `universe.trbc_level == "industry_group"`.
TRBC_INDUSTRY_GROUPS: dict[str, str] = {
    # Energy
    "Coal": "Energy",
    "Oil & Gas": "Energy",
    "Oil & Gas Related Equipment and Services": "Energy",
    "Renewable Energy": "Energy",
    # Basic Materials
    "Chemicals": "Basic Materials",
    "Metals & Mining": "Basic Materials",
    "Construction Materials": "Basic Materials",
    "Paper & Forest Products": "Basic Materials",
    "Containers & Packaging": "Basic Materials",
    # Industrials
    "Aerospace & Defense": "Industrials",
    "Machinery, Tools, Heavy Vehicles, Trains & Ships": "Industrials",
    "Construction & Engineering": "Industrials",
    "Professional & Commercial Services": "Industrials",
    "Industrial Conglomerates": "Industrials",
    "Freight & Logistics Services": "Industrials",
    "Passenger Transportation Services": "Industrials",
    # Consumer Cyclicals
    "Automobiles & Auto Parts": "Consumer Cyclicals",
    "Textiles & Apparel": "Consumer Cyclicals",
    "Homebuilding & Construction Supplies": "Consumer Cyclicals",
    "Household Goods": "Consumer Cyclicals",
    "Hotels & Entertainment Services": "Consumer Cyclicals",
    "Media & Publishing": "Consumer Cyclicals",
    "Diversified Retail": "Consumer Cyclicals",
    "Other Specialty Retailers": "Consumer Cyclicals",
    # Consumer Non-Cyclicals
    "Beverages": "Consumer Non-Cyclicals",
    "Food & Tobacco": "Consumer Non-Cyclicals",
    "Personal & Household Products & Services": "Consumer Non-Cyclicals",
    "Food & Drug Retailing": "Consumer Non-Cyclicals",
    # Financials
    "Banking Services": "Financials",
    "Investment Banking & Investment Services": "Financials",
    "Insurance": "Financials",
    "Collective Investments": "Financials",
    # Healthcare
    "Healthcare Equipment & Supplies": "Healthcare",
    "Healthcare Providers & Services": "Healthcare",
    "Pharmaceuticals": "Healthcare",
    "Biotechnology & Medical Research": "Healthcare",
    # Technology
    "Semiconductors & Semiconductor Equipment": "Technology",
    "Communications & Networking": "Technology",
    "Electronic Equipment & Parts": "Technology",
    "Computers, Phones & Household Electronics": "Technology",
    "Software & IT Services": "Technology",
    "Financial Technology (Fintech) & Infrastructure": "Technology",
    "Telecommunications Services": "Technology",
    # Utilities
    "Electric Utilities & IPPs": "Utilities",
    "Natural Gas Utilities": "Utilities",
    "Water & Related Utilities": "Utilities",
    "Multiline Utilities": "Utilities",
    # Real Estate
    "Real Estate Operations": "Real Estate",
    "Residential & Commercial REITs": "Real Estate",
    # The three tiny sectors
    "Academic & Educational Services": "Academic & Educational Services",
    "Government Activity": "Government Activity",
    "Institutions, Associations & Organizations": "Institutions, Associations & Organizations",
}

# Extra style factors, used only at scale (`universe.n_extra_styles`); the first n are added
# after STYLE_FACTORS. Names follow common multi-factor model usage (e.g. Barra USE4 / GEM3).
EXTRA_STYLE_FACTORS: tuple[str, ...] = (
    "Beta",
    "Liquidity",
    "EarningsYield",
    "Profitability",
    "Investment",
    "ShortInterest",
    "EarningsQuality",
    "EarningsVariability",
    "ResidualVolatility",
    "AnalystSentiment",
    "Seasonality",
    "ShortTermReversal",
)


def factor_set_for(
    model_settings: ModelSettings, sectors: Sequence[str] | None = None
) -> FactorSet:
    """Build the model's FactorSet from the risk-model settings.

    Categories: the 13 TRBC economic sectors (`universe.trbc_level == "economic_sector"`) or the
    TRBC industry groups (`"industry_group"`), unless `sectors` is given (the categories found in
    user data), which overrides both. Styles: STYLE_FACTORS plus the first
    `universe.n_extra_styles` of EXTRA_STYLE_FACTORS, or none when the exposure settings have no
    `style` group. Market is present when the exposure settings have a `market` group.
    A group's `factors` subset (settings) keeps only those names, in the order above; a name
    that is not one of the group's factors is a ValueError naming it.
    """
    universe = model_settings.universe
    exposures = model_settings.exposures
    if universe.n_extra_styles > len(EXTRA_STYLE_FACTORS):
        raise ValueError(
            f"universe.n_extra_styles={universe.n_extra_styles} but only "
            f"{len(EXTRA_STYLE_FACTORS)} extra style factors exist"
        )
    if sectors is not None:
        categories: tuple[str, ...] = tuple(sectors)
    elif universe.trbc_level == "industry_group":
        categories = tuple(TRBC_INDUSTRY_GROUPS)
    else:
        categories = TRBC_SECTORS
    styles: tuple[str, ...] = ()
    if exposures.has(GROUP_STYLE):
        styles = STYLE_FACTORS + EXTRA_STYLE_FACTORS[: universe.n_extra_styles]
    styles = _keep_subset(styles, exposures.subset(GROUP_STYLE), "style")
    categories = _keep_subset(categories, exposures.subset(GROUP_TRBC), "trbc")
    return FactorSet.build(sectors=categories, styles=styles, market=exposures.has(GROUP_MARKET))


def _keep_subset(
    names: tuple[str, ...], subset: Sequence[str] | None, group: str
) -> tuple[str, ...]:
    """`names` restricted to `subset` (kept in `names` order); unknown names are refused."""
    if subset is None:
        return names
    unknown = [n for n in subset if n not in names]
    if unknown:
        raise ValueError(
            f"exposures: the {group!r} group's factors {unknown} are not among its factors "
            f"{list(names)}"
        )
    return tuple(n for n in names if n in set(subset))
