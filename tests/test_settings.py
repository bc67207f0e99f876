"""Settings: the tutorial's names and defaults, file loading, and errors that name the field."""

import json

import pytest

from factorcov_pipeline.core.settings import (
    FactorCovarianceReportSettingsV2,
    SettingsError,
    load_settings,
    parse_settings,
)

TUTORIAL_JSON = {
    "halflife_vol": 60.0,
    "halflife_cor": 120.0,
    "halflife_vra": None,
    "nw_lags_vol": 0,
    "nw_lags_vol_halflife_override": None,
    "nw_lags_cor": 0,
    "shrink_cor_method": None,
    "shrink_cor_length": None,
    "combine_standardized": False,
}


def test_covariance_settings_print_exactly_as_the_tutorial():
    settings = FactorCovarianceReportSettingsV2()
    assert json.loads(settings.factor_cov_settings.model_dump_json(indent=2)) == TUTORIAL_JSON
    assert list(settings.factor_cov_settings.model_dump()) == list(TUTORIAL_JSON)
    model = settings.factor_model_settings
    assert model.modelconstruction.zero_sum_constraints == {"trbc": "mcap_weighted"}
    assert model.modelconstruction.estimation_universe is None
    assert [g.hierarchy for g in model.exposures.exposures] == ["market", "trbc", "style"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_file_overrides_only_the_keys_it_names(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    data = {
        "factor_cov_settings": {"halflife_vol": 42},
        "factor_model_settings": {"universe": {"n_assets": 50}},
    }
    path.write_text(json.dumps(data))  # JSON is valid YAML
    settings = load_settings(path)
    assert settings.factor_cov_settings.halflife_vol == 42.0
    assert settings.factor_cov_settings.halflife_cor == 120.0
    assert settings.factor_model_settings.universe.n_assets == 50
    assert settings.factor_model_settings.universe.dataset == "synthetic"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"factor_cov_settings": {"halflife_vol": 0}}, "factor_cov_settings.halflife_vol"),
        ({"factor_cov_settings": {"halflife_cor": -5}}, "factor_cov_settings.halflife_cor"),
        ({"factor_cov_settings": {"nw_lags_vol": -1}}, "factor_cov_settings.nw_lags_vol"),
        ({"factor_cov_settings": {"nw_lags_cor": 1.5}}, "factor_cov_settings.nw_lags_cor"),
        (
            {"factor_cov_settings": {"shrink_cor_method": "XYZ"}},
            "factor_cov_settings.shrink_cor_method",
        ),
        ({"factor_cov_settings": {"shrink_cor_length": 100}}, "shrink_cor_length"),
        (
            {"factor_cov_settings": {"nw_lags_vol_halflife_override": 30}},
            "nw_lags_vol_halflife_override",
        ),
        ({"factor_cov_settings": {"halflife": 60}}, "factor_cov_settings.halflife"),
        (
            {
                "factor_model_settings": {
                    "modelconstruction": {"zero_sum_constraints": {"trbc": "cap"}}
                }
            },
            "zero_sum_constraints.trbc",
        ),
        (
            {
                "factor_model_settings": {
                    "modelconstruction": {"zero_sum_constraints": {"gics": "mcap_weighted"}}
                }
            },
            "zero_sum_constraints.gics",
        ),
        (
            {"factor_model_settings": {"universe": {"n_assets": "many"}}},
            "factor_model_settings.universe.n_assets",
        ),
        (
            {"factor_model_settings": {"modelconstruction": {"return_clip_bounds": [0.1, -0.1]}}},
            "return_clip_bounds",
        ),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_values_name_the_field(data, field):
    with pytest.raises(SettingsError) as err:
        parse_settings(data, source="my-settings.yaml")
    assert field in str(err.value)
    assert "my-settings.yaml" in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SettingsError, match=r"bad\.json"):
        load_settings(bad)


def test_fingerprint_changes_with_any_setting():
    a = FactorCovarianceReportSettingsV2()
    b = parse_settings({"factor_cov_settings": {"combine_standardized": True}})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == FactorCovarianceReportSettingsV2().fingerprint()
    assert b.factor_cov_settings.non_default() == {"combine_standardized": True}


def test_new_blocks_count_in_the_identity_only_when_not_default():
    """A file built by 0.2 (no specific/portfolio risk blocks) keeps its identity under the
    defaults; a non-default value in a new block is part of the identity."""
    default = json.loads(FactorCovarianceReportSettingsV2().fingerprint())
    assert set(default) == {"factor_model_settings", "factor_cov_settings"}
    custom = FactorCovarianceReportSettingsV2.model_validate(
        {"specific_risk_settings": {"halflife": 42}}
    )
    assert json.loads(custom.fingerprint())["specific_risk_settings"]["halflife"] == 42
    assert custom.fingerprint() != FactorCovarianceReportSettingsV2().fingerprint()
