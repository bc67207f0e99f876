"""Every reason code `specific_risk.reason` can hold has words for the risk report's warning."""

from factorcov_pipeline.core.specific_risk import REASON_WORDS, REASONS


def test_every_reason_code_has_words() -> None:
    assert set(REASON_WORDS) == set(REASONS.values())
    assert all(words and words == words.strip() for words in REASON_WORDS.values())
