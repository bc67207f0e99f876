"""One module per asset; `ALL_ASSETS` in pipeline order."""

from factorcov_pipeline.orchestration.assets.covariance_report import covariance_report
from factorcov_pipeline.orchestration.assets.exposures import exposures
from factorcov_pipeline.orchestration.assets.factor_correlation import factor_correlation
from factorcov_pipeline.orchestration.assets.factor_covariance import factor_covariance
from factorcov_pipeline.orchestration.assets.factor_returns import factor_returns
from factorcov_pipeline.orchestration.assets.factor_volatility import factor_volatility
from factorcov_pipeline.orchestration.assets.forecast_bias import forecast_bias
from factorcov_pipeline.orchestration.assets.model_leaderboard import model_leaderboard
from factorcov_pipeline.orchestration.assets.portfolio_risk import portfolio_risk
from factorcov_pipeline.orchestration.assets.risk_backtest import risk_backtest
from factorcov_pipeline.orchestration.assets.specific_risk import specific_risk
from factorcov_pipeline.orchestration.assets.universe import universe

ALL_ASSETS = [
    universe,
    exposures,
    factor_returns,
    factor_volatility,
    factor_correlation,
    factor_covariance,
    covariance_report,
    forecast_bias,
    model_leaderboard,
    specific_risk,
    portfolio_risk,
    risk_backtest,
]
