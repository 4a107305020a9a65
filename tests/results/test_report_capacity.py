"""objective=capacity in the report: max concurrency under SLO and the throughput there."""

from __future__ import annotations

from results_helpers import make_record, trial

from autotune.report.render import markdown
from autotune.report.summary import label, summarize


def test_the_report_shows_capacity_and_its_throughput():
    a, b = trial(1, 900.0, 400.0, values=[48.0]), trial(2, 1200.0, 300.0, values=[96.0])
    a.metrics.update(capacity_concurrency=48.0, capacity_output_throughput_tok_s=900.0)
    b.metrics.update(capacity_concurrency=96.0, capacity_output_throughput_tok_s=1500.0)
    s = summarize(
        make_record([a, b], metrics=["capacity_concurrency"], slo={"ttft_p99_ms": 2000.0})
    )
    assert s["best"]["name"] == "trial-002"
    text = markdown(s, images=False)
    assert "max concurrency under SLO" in text and "output tok/s there" in text
    assert "| 96 | 1500.0 |" in text and "| 48 | 900.0 |" in text
    assert label("capacity_concurrency") == "max concurrency under SLO"


def test_other_studies_have_no_capacity_columns():
    s = summarize(make_record([trial(1, 900.0, 400.0)]))
    assert "under SLO" not in markdown(s, images=False)
