"""The docstring examples of the results modules run as written."""

from __future__ import annotations

import doctest

import pytest

import autotune.report
import autotune.report.export
import autotune.report.records
import autotune.report.summary


@pytest.mark.parametrize(
    "module",
    [autotune.report, autotune.report.summary, autotune.report.records, autotune.report.export],
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
