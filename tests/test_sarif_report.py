"""The SARIF reporter, validated with sarif-pydantic's SARIF 2.1.0 models.

No maintained PyPI package ships the official SARIF JSON schema in a form usable offline, so
validation is sarif-pydantic (strict parsing of the JSON text) plus three things its models
leave out: unknown properties are errors (so a misspelt ``ruleID`` fails), the few spec
properties the models lack are validated with the models of their values, and the numeric and
enumerated constraints of the official schema are checked (lines and columns >= 1, levels).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from reporter_samples import FINDINGS, REGISTRY, clean_run, render, sample_run
from sarif_pydantic import Sarif
from sarif_pydantic.sarif import Notification

from trainlint.report.sarif import artifact_location

LEVELS = {"none", "note", "warning", "error"}
# Properties of SARIF 2.1.0 objects that sarif-pydantic's models do not declare, with the type
# of their value as the spec defines it (§3.14.17 run.columnKind, §3.20.21 invocation
# .toolExecutionNotifications).
NOT_MODELLED: dict[tuple[str, str], TypeAdapter[Any]] = {
    ("Run", "columnKind"): TypeAdapter(Any),  # its values are checked in _check_constraints
    ("Invocation", "toolExecutionNotifications"): TypeAdapter(list[Notification]),
}
URI_REFERENCE = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]+$")


class SarifInvalid(AssertionError):
    pass


def _walk_models(model: BaseModel, where: str) -> None:
    for name, value in (model.model_extra or {}).items():
        adapter = NOT_MODELLED.get((type(model).__name__, name))
        if adapter is None:
            raise SarifInvalid(f"{where}: unknown property {name!r}")
        try:
            parsed = adapter.validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            raise SarifInvalid(f"{where}.{name}: {exc}") from None
        _walk_values(parsed, f"{where}.{name}")
    for name in type(model).model_fields:
        _walk_values(getattr(model, name), f"{where}.{name}")


def _walk_values(value: Any, where: str) -> None:
    if isinstance(value, BaseModel):
        _walk_models(value, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_values(item, f"{where}[{index}]")


def _regions(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("region", "deletedRegion") and isinstance(value, dict):
                found.append(value)
            found.extend(_regions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_regions(item))
    return found


def _check_constraints(document: dict[str, Any]) -> None:
    if document.get("version") != "2.1.0":
        raise SarifInvalid("version must be 2.1.0")
    for run in document["runs"]:
        if run.get("columnKind", "utf16CodeUnits") not in ("utf16CodeUnits", "unicodeCodePoints"):
            raise SarifInvalid(f"bad columnKind {run['columnKind']!r}")
        rules = run["tool"]["driver"].get("rules", [])
        if len({rule["id"] for rule in rules}) != len(rules):
            raise SarifInvalid("duplicate rule ids")
        for rule in rules:
            level = rule.get("defaultConfiguration", {}).get("level", "warning")
            if level not in LEVELS:
                raise SarifInvalid(f"{rule['id']}: bad default level {level!r}")
        for result in run.get("results", []):
            index = result.get("ruleIndex")
            if index is not None and (index < 0 or rules[index]["id"] != result.get("ruleId")):
                raise SarifInvalid(f"ruleIndex {index} does not point at {result.get('ruleId')}")
        for region in _regions(run):
            for key in ("startLine", "startColumn", "endLine", "endColumn"):
                if key in region and region[key] < 1:
                    raise SarifInvalid(f"region {key} must be >= 1: {region}")
        for location in re.findall(r'"uri": "([^"]*)"', json.dumps(run)):
            if not URI_REFERENCE.match(location):
                raise SarifInvalid(f"not a URI reference: {location!r}")


def validate_sarif(document: dict[str, Any]) -> Sarif:
    try:
        log = Sarif.model_validate_json(json.dumps(document), strict=True)
    except ValidationError as exc:
        raise SarifInvalid(str(exc)) from None
    _walk_models(log, "$")
    _check_constraints(document)
    return log


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    return json.loads(render("sarif", sample_run(tmp_path)))


def test_sample_run_is_valid_sarif(document: dict[str, Any]) -> None:
    log = validate_sarif(document)
    assert log.version == "2.1.0"
    assert document["$schema"].endswith("sarif-2.1.0.json")


def test_driver_describes_every_registered_rule(document: dict[str, Any]) -> None:
    driver = document["runs"][0]["tool"]["driver"]
    assert driver["name"] == "trainlint"
    assert driver["version"] and driver["informationUri"].startswith("https://")
    assert [rule["id"] for rule in driver["rules"]] == list(REGISTRY)
    levels = {rule["id"]: rule["defaultConfiguration"]["level"] for rule in driver["rules"]}
    assert levels == {"TST101": "error", "TST202": "warning", "TST303": "note", "TST404": "warning"}
    warning = driver["rules"][1]
    assert warning["name"] == "sample-warning"
    assert warning["shortDescription"]["text"] == "A sample rule for the reporter tests."
    assert warning["fullDescription"]["text"] == "Flags the sample pattern."
    assert "## Why is this bad?" in warning["help"]["text"]
    assert warning["help"]["markdown"].startswith("# TST202 sample-warning\n")
    assert "\n## Example\n" in warning["help"]["markdown"]  # dedented: renders as a heading
    assert warning["properties"]["frameworks"] == ["torch", "tf"]


def test_results_carry_rule_level_location_and_fix(document: dict[str, Any]) -> None:
    run = document["runs"][0]
    results = run["results"]
    assert [r["ruleId"] for r in results] == [f.code for f in FINDINGS]
    assert [r["level"] for r in results] == ["note", "error", "warning"]
    error = results[1]
    assert run["tool"]["driver"]["rules"][error["ruleIndex"]]["id"] == "TST101"
    location = error["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "pkg/train.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 3, "startColumn": 2, "endLine": 3, "endColumn": 21}
    assert error["fixes"][0]["description"]["text"] == FINDINGS[1].fix
    assert "fixes" not in results[0]
    assert results[2]["message"]["text"] == FINDINGS[2].message
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file://")


def test_fix_changes_nothing_if_applied(document: dict[str, Any]) -> None:
    (change,) = document["runs"][0]["results"][1]["fixes"][0]["artifactChanges"]
    (replacement,) = change["replacements"]
    region = replacement["deletedRegion"]
    assert region["startColumn"] == region["endColumn"] and region["startLine"] == region["endLine"]
    assert "insertedContent" not in replacement


def test_unanalyzable_files_are_notifications(document: dict[str, Any]) -> None:
    (invocation,) = document["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    notes = invocation["toolExecutionNotifications"]
    by_path = {n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: n for n in notes}
    assert set(by_path) == {"missing.py", "pkg/broken.py", "huge.py"}
    broken = by_path["pkg/broken.py"]
    assert broken["level"] == "error"
    assert "syntax error" in broken["message"]["text"]
    assert broken["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    assert by_path["missing.py"]["level"] == "error"
    assert by_path["huge.py"]["level"] == "warning"


def test_clean_run_is_successful(tmp_path: Path) -> None:
    document = json.loads(render("sarif", clean_run(tmp_path)))
    validate_sarif(document)
    (invocation,) = document["runs"][0]["invocations"]
    assert invocation == {"executionSuccessful": True}
    assert document["runs"][0]["results"] == []


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("a dir/100% sure.py", "a%20dir/100%25%20sure.py"),
        ("../outside/x.py", "../outside/x.py"),
        ("caf\u00e9.py", "caf%C3%A9.py"),
    ],
)
def test_uris_are_escaped(path: str, uri: str) -> None:
    assert artifact_location(path) == {"uri": uri, "uriBaseId": "%SRCROOT%"}


def test_absolute_paths_become_file_uris(tmp_path: Path) -> None:
    location = artifact_location(str(tmp_path / "x.py"))
    assert location["uri"].startswith("file:///") and "uriBaseId" not in location


def _break(path: str, value: Any) -> Any:
    """A mutation that sets (or, with value ..., deletes) the key at a dotted path."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return mutate


BROKEN = {
    "no runs": _break("runs", ...),
    "unknown level": _break("runs.0.results.1.level", "fatal"),
    "result without message": _break("runs.0.results.1.message", ...),
    "misspelt property": _break("runs.0.results.1.ruleID", "TST101"),
    "line as a string": _break(
        "runs.0.results.1.locations.0.physicalLocation.region.startLine", "3"
    ),
    "line zero": _break("runs.0.results.1.locations.0.physicalLocation.region.startLine", 0),
    "fix without changes": _break("runs.0.results.1.fixes.0.artifactChanges", ...),
    "wrong rule index": _break("runs.0.results.1.ruleIndex", 2),
    "bad default level": _break("runs.0.tool.driver.rules.0.defaultConfiguration.level", "high"),
    "driver without name": _break("runs.0.tool.driver.name", ...),
    "bad notification": _break("runs.0.invocations.0.toolExecutionNotifications.0.level", "bad"),
    "notification without message": _break(
        "runs.0.invocations.0.toolExecutionNotifications.0.message", ...
    ),
    "success as a string": _break("runs.0.invocations.0.executionSuccessful", "false"),
    "uri with a space": _break(
        "runs.0.results.1.locations.0.physicalLocation.artifactLocation.uri", "a b.py"
    ),
    "wrong version": _break("version", "2.0.0"),
}


@pytest.mark.parametrize("breakage", list(BROKEN))
def test_broken_documents_are_rejected(document: dict[str, Any], breakage: str) -> None:
    validate_sarif(document)  # the untouched document passes...
    broken = copy.deepcopy(document)
    BROKEN[breakage](broken)
    with pytest.raises(SarifInvalid):  # ...and each single breakage fails
        validate_sarif(broken)


def test_real_fixes_partial_fingerprints_and_only_rules_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from trainlint.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text("def train(optimizer):\n    optimizer.zero_grad\n")
    out = (
        CliRunner()
        .invoke(main, ["check", "--no-cache", "--select", "TL405,TL5", "--format", "sarif", "t.py"])
        .stdout
    )
    document = json.loads(out)
    validate_sarif(document)
    run = document["runs"][0]
    from trainlint.rule import load_registry

    selected = {code for code in load_registry() if code == "TL405" or code.startswith("TL5")}
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == selected
    (result,) = run["results"]
    assert re.fullmatch(r"[0-9a-f]{20}", result["partialFingerprints"]["trainlintFinding/v1"])
    (change,) = result["fixes"][0]["artifactChanges"]
    assert change["replacements"] == [
        {
            "deletedRegion": {"startLine": 2, "startColumn": 5, "endLine": 2, "endColumn": 24},
            "insertedContent": {"text": "optimizer.zero_grad()"},
        }
    ]
