"""Factor names and groups of the tutorial's risk model (Market + 13 TRBC sectors + 7 styles).

Names are exactly those of the vendor tutorial (`factor-covariance-tutorial.txt`): its factor
return columns are `market.Market`, `style.<Style>` and `trbc.<Sector>`; we store the part after
the dot as `factor` and the part before it as `factor_group`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
