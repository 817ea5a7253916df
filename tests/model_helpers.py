"""Small helpers for model unit tests: build a model from source, find nodes by text."""

from __future__ import annotations

import textwrap

import libcst as cst

from trainlint.model import Scope, TrainingModel


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source(textwrap.dedent(source))


def scope(model: TrainingModel, name: str) -> Scope:
    if name == "<module>":
        return model.module_scope
    for candidate in model.scopes:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def expr(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)
