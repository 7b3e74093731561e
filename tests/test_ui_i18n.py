"""UI text: both languages complete, one language per message, and the request's locale read from its header."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from engine.quality.reasons import REASON_CODES
from errors import ImageDecodeError, NoFaceError
from ui.i18n import LABELS, MESSAGES, error_text, locale_of, reason_text, tr

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_label_and_message_exists_in_both_languages():
    assert set(LABELS["en"]) == set(LABELS["zh-CN"])
    assert set(MESSAGES["en"]) == set(MESSAGES["zh"])
    for key, english in MESSAGES["en"].items():
        assert not CJK.search(english), key
        assert CJK.search(MESSAGES["zh"][key]), f"{key} is not translated"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("zh", "zh"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("fr-FR", "en"), ("", "en"), (None, "en")],
)
def test_locale_is_the_first_preferred_language(header, expected):
    request = SimpleNamespace(headers={} if header is None else {"accept-language": header})
    assert locale_of(request) == expected
    assert locale_of(None) == "en"


def test_every_reason_code_the_engine_gives_has_its_sentences():
    from schemas.messages import REASON_TEXTS, describe

    assert set(REASON_TEXTS) == set(REASON_CODES)
    assert [reason["code"] for reason in describe(list(REASON_CODES))] == list(REASON_CODES)


def test_reasons_and_errors_come_in_one_language():
    for code in REASON_CODES:
        assert not CJK.search(reason_text(code, "en")) and CJK.search(reason_text(code, "zh"))
        assert len(reason_text(code, "zh", short=True)) < len(reason_text(code, "zh"))
    assert error_text(NoFaceError("no face found in image B"), "zh") == "图像 B 中未检测到人脸"
    assert error_text(NoFaceError("no face found in image B"), "en") == "no face found in image B"
    decode_zh = error_text(ImageDecodeError("the file is empty (0 bytes)"), "zh")
    assert CJK.search(decode_zh) and not re.search(r"[a-z]{3,}", decode_zh), decode_zh  # format names (JPEG, PNG) stay
    assert tr("zh", "low_quality", threshold=0.4) == "低质量（质量 < 0.40，拒绝阈值）"
