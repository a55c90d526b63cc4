"""psft_edu.course.tables: rows in, the same table as text, Markdown and HTML."""

from __future__ import annotations

import pytest

from psft_edu.course.tables import arrow, make_table, show_table


def test_dict_of_dicts_with_formats_and_titles() -> None:
    rows = {"sft": {"acc": 0.41234, "kl": 3.2}, "psft": {"acc": 0.5, "kl": 0.75}}
    table = make_table(rows, columns=["acc", ("kl", "KL to base")], formats={"acc": ".1%"})
    assert table.header == ["run", "acc", "KL to base"]
    assert table.cells == [["sft", "41.2%", "3.200"], ["psft", "50.0%", "0.750"]]
    text = table.text().splitlines()
    assert text[0].split() == ["run", "acc", "KL", "to", "base"]
    assert set(text[1].replace(" ", "")) == {"-"}
    assert text[2].startswith("sft ") and text[2].endswith("3.200")
    md = table.markdown().splitlines()
    assert md[0] == "| run | acc | KL to base |" and md[1] == "| :--- | ---: | ---: |"
    assert "<th style=\"text-align:right\">KL to base</th>" in table.html()
    assert table._repr_markdown_() == table.markdown() and repr(table) == table.text()


def test_list_of_dicts_and_lists() -> None:
    table = make_table([{"a": 1, "b": "x"}, {"a": 22, "b": "y|z"}])
    assert table.header == ["a", "b"] and table.numeric == [True, False]
    assert "y\\|z" in table.markdown()
    listed = make_table([[1, 2.5], [3, None]], columns=["n", ("v", "value")], formats={"v": lambda v: f"<{v}>"})
    assert listed.cells == [["1", "<2.5>"], ["3", ""]]
    assert "&lt;2.5&gt;" in listed.html()


def test_arrow_and_title() -> None:
    table = make_table({"r": {"reward": (0.1, 0.25)}}, formats={"reward": arrow(".2f")}, title="RL")
    assert table.cells == [["r", "0.10 → 0.25"]]
    assert table.text().startswith("RL\n") and "<caption>RL</caption>" in table.html()


def test_bad_rows_say_which() -> None:
    with pytest.raises(ValueError, match="row 1 has no value for column 'b'"):
        make_table([{"a": 1, "b": 2}, {"a": 3}])
    with pytest.raises(ValueError, match="row 0 has 1 values for 2 columns"):
        make_table([[1]], columns=["a", "b"])
    with pytest.raises(ValueError, match="need `columns`"):
        make_table([[1, 2]])


def test_show_table_prints_outside_jupyter(capsys) -> None:
    assert show_table({"x": {"v": 1.0}}) is None
    assert capsys.readouterr().out.splitlines()[-1].split() == ["x", "1.000"]


def test_paired_columns() -> None:
    from psft_edu.course.tables import paired_columns

    row = {"reward_first": 0.1, "reward_last": 0.3, "ood_before": 0.5, "ood_after": 0.4, "lonely_first": 1.0}
    assert paired_columns(row) == {"reward": (0.1, 0.3), "ood": (0.5, 0.4)}
    table = make_table({"sft": paired_columns(row)}, formats={"reward": arrow(".1f"), "ood": arrow(".1f")})
    assert table.cells == [["sft", "0.1 → 0.3", "0.5 → 0.4"]]
