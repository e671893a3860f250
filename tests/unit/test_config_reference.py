"""docs/operations.md's configuration reference is what the settings classes read."""

from __future__ import annotations

from cdrflow_dev.config_reference import DOC, block, render, undocumented


def test_the_reference_in_docs_is_generated_from_the_settings_classes() -> None:
    assert block(DOC.read_text(encoding="utf-8")) == render(), (
        "docs/operations.md is out of date: run `make docs`"
    )


def test_every_setting_says_what_it_is_for() -> None:
    assert undocumented() == []


def test_the_reference_names_each_variable_once_with_its_default() -> None:
    table = render()
    assert table.count("`CDR_ADMIN_TOKEN` | required | all |") == 1
    assert "`CDR_NOTIFIER_PORT` | `8083` | notifier | HTTP port. |" in table
    assert "`CDR_ALLOW_PRIVATE_WEBHOOKS` | `false` | notifier |" in table
    names = [line.split("`")[1] for line in table.splitlines()[2:]]
    assert len(names) == len(set(names)) and all(n.startswith("CDR_") for n in names)
