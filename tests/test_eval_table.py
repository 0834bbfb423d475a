"""occrecon.eval.table: the paper's Table 2-4 layout, pinned as text and Markdown."""
from __future__ import annotations

import pytest

from occrecon.eval import Summary, format_table, summarise

ROWS = {
    "Pretrained": {"Unoccluded": {"acc": Summary(0.92, 0.04, 10), "ppv": Summary(0.96, 0.02, 10),
                                  "tpr": Summary(0.92, 0.05, 10), "f1": Summary(0.94, 0.05, 10)},
                   "Occluded": {"acc": Summary(0.7, 0.1, 8), "ppv": Summary(0.92, 0.03, 8),
                                "tpr": Summary(0.59, 0.11, 7, 1), "f1": Summary(0.71, 0.12, 7, 1)}},
    "Proposed": {"Unoccluded": {"acc": Summary(0.94, 0.02, 10), "ppv": Summary(0.92, 0.03, 10),
                                "tpr": Summary(0.99, 0.01, 10), "f1": Summary(0.96, 0.03, 10)},
                 "Occluded": {"acc": Summary(0.88, 0.05, 8), "f1": Summary(0.9, 0.04, 8)}},
}


def test_plain_layout_pinned():
    # first column 10 wide + 2; each group 4 columns of width 4 joined by 2 spaces (22), groups 4 spaces apart,
    # subset names centred over their group
    text = format_table(ROWS, ["Unoccluded", "Occluded"], std=False, title="Table 4")
    assert text.split("\n") == [
        "Table 4",
        "                  Unoccluded                 Occluded",
        "Method       ACC   PPV   TPR    F1     ACC   PPV   TPR    F1",
        "------------------------------------------------------------",
        "Pretrained  0.92  0.96  0.92  0.94    0.70  0.92  0.59  0.71",
        "Proposed    0.94  0.92  0.99  0.96    0.88     -     -  0.90",
    ]


def test_plain_layout_with_std_and_long_subset_name():
    rows = {"MoFA": {"CelebA-Unoccluded-long-name": {"rmse": Summary(8.01, 0.47, 5)}}}
    text = format_table(rows, metrics=["rmse"])
    assert text.split("\n") == [
        "        CelebA-Unoccluded-long-name",
        "Method                         RMSE",
        "-----------------------------------",
        "MoFA                    8.01 ± 0.47",
    ]


def test_markdown_layout_pinned():
    text = format_table(ROWS, ["Occluded"], ["f1", "acc"], markdown=True, digits=3)
    assert text.split("\n") == [
        "| Method | Occluded F1 | Occluded ACC |",
        "| --- | ---: | ---: |",
        "| Pretrained | 0.710 ± 0.120 | 0.700 ± 0.100 |",
        "| Proposed | 0.900 ± 0.040 | 0.880 ± 0.050 |",
    ]


def test_default_subsets_follow_first_method_and_empty_summary_prints_dash():
    rows = {"A": {"x": {"f1": summarise([float("nan")])}, "y": {"f1": summarise([0.5, 1.0])}}}
    text = format_table(rows, metrics=["f1"], markdown=True)
    assert text.split("\n")[0] == "| Method | x F1 | y F1 |"
    assert text.split("\n")[2] == "| A | - | 0.75 ± 0.25 |"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="rows"):
        format_table({})
    with pytest.raises(TypeError, match="rows"):
        format_table({"A": {"x": {"f1": 0.5}}}, metrics=["f1"])
    with pytest.raises(TypeError, match="rows"):
        format_table({"A": [1, 2]})
    with pytest.raises(ValueError, match="metrics"):
        format_table(ROWS, metrics=[])
    with pytest.raises(ValueError, match="digits"):
        format_table(ROWS, digits=-1)
