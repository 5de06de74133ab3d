"""Claims: a claims file -> a verdict per claim and metric that follows the bootstrap interval (or the factor
test), the Claims section and tables/claims.tex in the report, one-line errors for a bad claims file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_ind

from mnc_bench.cli import main
from mnc_bench.errors import UserError
from mnc_bench.reporting import write_report
from mnc_bench.reporting.claims import Claim, evaluate_claims, load_claims
from mnc_bench.reporting.stats import compare
from mnc_bench.suites.spec import load_suite

AP = "coco/segm/AP"


def _runs(cells: dict[tuple, list[float]], axes: tuple[str, ...], suite: str = "s") -> pd.DataFrame:
    """Finished runs of one suite: one row per (cell, seed) with the cell's axis values and AP."""
    rows = []
    for values, aps in cells.items():
        for seed, ap in enumerate(aps):
            row = {"suite": suite, "model": "mnc_3stage_shapes", "seed": seed, AP: ap}
            row.update({f"axis.{k}": v for k, v in zip(axes, values)})
            rows.append(row)
    return pd.DataFrame(rows)


def _compare_claim(higher: dict, than: dict, metric: str = AP) -> Claim:
    return Claim(claim="c", source="", suite="s", metrics=(metric,), higher=higher, than=than)


@pytest.mark.parametrize("high, low, verdict", [
    ([0.50, 0.52, 0.51], [0.40, 0.41, 0.42], "supported"),
    ([0.40, 0.41, 0.42], [0.50, 0.52, 0.51], "contradicted"),
    ([0.40, 0.50, 0.45], [0.44, 0.46, 0.41], "inconclusive"),
])
def test_a_comparison_follows_the_bootstrap_interval(high, low, verdict):
    runs = _runs({(True,): high, (False,): low}, ("model.cascade.box_grad",))
    claim = _compare_claim({"model.cascade.box_grad": True}, {"model.cascade.box_grad": False})
    [result] = evaluate_claims([claim], runs)
    expected = compare(high, low).difference  # the report's own method, recomputed from the raw values
    assert result.verdict == verdict
    assert (result.difference.estimate, result.difference.low, result.difference.high) == pytest.approx(
        (np.mean(high) - np.mean(low), expected.low, expected.high))
    assert result.n == (3, 3)


def test_two_seeds_a_side_need_students_t_test_as_well_as_the_bootstrap_interval():
    # 2 vs 2 seeds 1 point apart, each side spread by 0.6: the bootstrap interval (3 distinct means a side)
    # excludes 0 and Student's t-test (2 degrees of freedom) does not. 13 points apart, one side steady and
    # one spread by 2.4 (as MNC's 5- and 3-stage cells): both exclude 0, where Welch's unpooled test, at
    # about 1 degree of freedom, would not.
    runs = _runs({(7,): [0.34, 0.346], (5,): [0.35, 0.356], (3,): [0.4985, 0.4995], (9,): [0.355, 0.389]},
                 ("model.cascade.num_stages",))
    close, far = evaluate_claims([
        _compare_claim({"model.cascade.num_stages": 7}, {"model.cascade.num_stages": 5}),
        _compare_claim({"model.cascade.num_stages": 3}, {"model.cascade.num_stages": 9})], runs)
    assert close.difference.high < 0  # the bootstrap alone would say contradicted
    assert close.verdict == "inconclusive" and close.reason == "Student's t-test p = 0.143"
    assert close.p_value == pytest.approx(ttest_ind([0.34, 0.346], [0.35, 0.356]).pvalue)
    assert far.verdict == "supported" and far.reason == ""
    assert far.p_value == pytest.approx(ttest_ind([0.4985, 0.4995], [0.355, 0.389]).pvalue)
    assert far.p_value < 0.05
    assert ttest_ind([0.4985, 0.4995], [0.355, 0.389], equal_var=False).pvalue > 0.05


def test_one_seed_on_a_side_gives_no_interval_and_no_verdict():
    runs = _runs({(5,): [0.5], (3,): [0.3, 0.31]}, ("model.cascade.num_stages",))
    [result] = evaluate_claims(
        [_compare_claim({"model.cascade.num_stages": 5}, {"model.cascade.num_stages": 3})], runs)
    assert result.verdict == "inconclusive" and "no interval" in result.reason


def test_selectors_match_values_as_collect_stores_them():
    # collect stores a mapping-valued axis as sorted JSON text, null as '', numbers read back as floats
    runs = _runs({("", 5.0): [0.5, 0.52], (json.dumps({"jitter": 0.2}), 5.0): [0.3, 0.32]},
                 ("model.proposal_control", "model.cascade.num_stages"))
    claim = _compare_claim({"model.proposal_control": None, "model.cascade.num_stages": 5},
                           {"model.proposal_control": {"jitter": 0.2}, "model.cascade.num_stages": 5})
    [result] = evaluate_claims([claim], runs)
    assert result.n == (2, 2) and result.verdict == "supported"


def test_a_difference_metric_is_taken_per_run():
    runs = _runs({(True,): [0.5, 0.6], (False,): [0.4, 0.5]}, ("model.cascade.box_grad",))
    runs["coco/boundary/AP"] = runs[AP] - np.where(runs["axis.model.cascade.box_grad"], 0.2, 0.05)
    claim = _compare_claim({"model.cascade.box_grad": False}, {"model.cascade.box_grad": True},
                           metric="coco/boundary/AP - coco/segm/AP")
    [result] = evaluate_claims([claim], runs)
    assert result.difference.estimate == pytest.approx(-0.05 - -0.2)
    assert result.verdict == "supported"


def test_a_factor_with_a_real_effect_is_supported_and_one_without_is_not():
    axes = ("model.loss_weights.mask", "model.loss_weights.cls")
    effect = {(m, c): [0.3 + 0.1 * m + s * 0.002 for s in range(3)]
              for m in (0.5, 1.0, 2.0) for c in (0.5, 1.0)}
    rng = np.random.default_rng(0)
    flat = {(m, c): list(0.4 + rng.normal(0, 0.01, 3)) for m in (0.5, 1.0, 2.0) for c in (0.5, 1.0)}
    claim = Claim(claim="c", source="", suite="s", metrics=(AP,), varies=axes)
    [strong] = evaluate_claims([claim], _runs(effect, axes))
    [none] = evaluate_claims([claim], _runs(flat, axes))
    assert strong.verdict == "supported" and strong.p_value < 0.01
    assert strong.cell_range == pytest.approx((0.35 + 0.002, 0.5 + 0.002))
    assert none.verdict == "inconclusive" and none.p_value > 0.05


def test_a_claim_without_runs_or_metric_is_not_measured():
    runs = _runs({(True,): [0.5, 0.6], (False,): [0.4, 0.5]}, ("model.cascade.box_grad",))
    other_suite = Claim(claim="c", source="", suite="elsewhere", metrics=(AP,), varies=("x",))
    no_metric = _compare_claim({"model.cascade.box_grad": True}, {"model.cascade.box_grad": False},
                               metric="coco/boundary/AP")
    results = evaluate_claims([other_suite, no_metric], runs)
    assert [r.verdict for r in results] == ["not measured", "not measured"]
    assert "elsewhere" in results[0].reason and "coco/boundary/AP" in results[1].reason


def test_a_selector_naming_no_axis_of_the_suite_is_a_user_error():
    runs = _runs({(True,): [0.5, 0.6]}, ("model.cascade.box_grad",))
    with pytest.raises(UserError, match="model.cascade.num_stages: not an axis of suite s"):
        evaluate_claims([_compare_claim({"model.cascade.num_stages": 5}, {"model.cascade.num_stages": 3})],
                        runs)


@pytest.mark.parametrize("text, message", [
    ("claim: [", "not valid YAML at line 1"),
    ("{}", "expected a non-empty list of claims"),
    ("- {claim: a, suite: s, metrics: [m], varies: [x], colour: red}", "claim 1: unknown key 'colour'"),
    ("- {claim: a, suite: s, varies: [x]}", "claim 1 ('a'): metrics: a non-empty list"),
    ("- {claim: a, suite: s, metrics: [m]}", "claim 1 ('a'): give either higher and than, or varies"),
    ("- {claim: a, suite: s, metrics: [m], higher: {x: 1}, than: {x: 2}, varies: [x]}", "give either"),
    ("- {claim: a, suite: s, metrics: [m], higher: {x: 1}}", "than: a non-empty mapping"),
    ("- {claim: a, suite: s, metrics: [m], higher: {x: 1}, than: {x: 1.0}}", "select the same runs"),
    ("- {claim: '', suite: s, metrics: [m], varies: [x]}", "claim 1: claim: a non-empty text"),
])
def test_a_malformed_claims_file_is_one_line_naming_the_claim(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_claims(path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("claims_file", sorted(str(p) for p in Path("configs/claims").glob("*.yaml")))
def test_the_shipped_claims_select_runs_of_the_shipped_suites(claims_file):
    """Every selector of a shipped claims file names axes (or models) of its suite with values the suite
    runs."""
    claims = load_claims(claims_file)
    for suite_name in sorted({c.suite for c in claims}):
        suite = load_suite(suite_name, build_models=False)
        rows = [{"suite": suite_name, "model": r.model, "seed": r.seed, AP: 0.5 + 0.01 * r.seed,
                 **{f"axis.{k}": ("" if v is None
                                  else json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
                    for k, v in r.axes.items()}} for r in suite.runs for _ in (0,)]
        runs = pd.concat([pd.DataFrame(rows).assign(seed=s) for s in (0, 1)], ignore_index=True)
        for claim in (c for c in claims if c.suite == suite_name):
            claim = Claim(**{**claim.__dict__, "metrics": (AP,)})
            [result] = evaluate_claims([claim], runs)
            assert result.verdict != "not measured", (claim.claim, result.reason)


@pytest.fixture(scope="module")
def results(tmp_path_factory, shapes_dataset, build_results):
    root = tmp_path_factory.mktemp("claims_inputs")
    build_results(root, shapes_dataset)
    return root / "results"


def test_the_report_has_a_claims_section_and_table(results, tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_text(textwrap.dedent("""\
        - claim: Deeper is better
          source: test
          suite: cascade_depth
          metrics: [coco/segm/AP]
          higher: {model.cascade.num_stages: 5, model.cascade.share_weights: true, \
model.cascade.box_grad: true}
          than: {model.cascade.num_stages: 3, model.cascade.box_grad: true}
        - claim: Jitter hurts
          suite: proposal_quality
          metrics: [coco/segm/AP]
          higher: {model.proposal_control: null}
          than: {model.proposal_control: {jitter: 0.2}}
        """))
    written = write_report(["cascade_depth"], tmp_path / "out", results_dir=results, bench=None,
                           figures=False, claims=claims)
    text = (written.out / "report.md").read_text()
    section = text.split("## Claims", 1)[1].split("\n## ", 1)[0]
    assert "Jitter hurts" not in section  # a claim about a suite not in the report is left to its report
    assert "claims about `proposal_quality` are left to a report of those suites." in section
    table = pd.read_parquet(results / "cascade_depth" / "collect.parquet")
    grad = table["axis.model.cascade.box_grad"].astype(bool)
    five = table[(table["axis.model.cascade.num_stages"] == 5) & table["axis.model.cascade.share_weights"]
                 & grad]
    three = table[(table["axis.model.cascade.num_stages"] == 3) & grad]
    delta = 100 * (five[AP].mean() - three[AP].mean())
    assert f"{delta:+.2f} [" in section and "| Deeper is better | test | cascade_depth |" in section
    tex = (written.out / "tables" / "claims.tex").read_text()
    assert "Deeper is better" in tex and r"\toprule" in tex
    assert "--claims <outside>/claims.yaml" in text  # the report's own command, no machine path


def test_a_bad_claims_file_stops_the_report_before_anything_is_written(results, tmp_path, capsys):
    claims = tmp_path / "claims.yaml"
    claims.write_text("- {claim: a, suite: s, metrics: [m]}\n")
    out = tmp_path / "out"
    code = main(["report", "cascade_depth", "--results", str(results), "--out", str(out),
                 "--claims", str(claims), "--no-figures"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: --claims") and err.count("\n") == 1
    assert not out.exists()
