"""Which split a DataLoader reads: training data, evaluation data, or a time series.

Read from how the code names the data on the way to the loader (the loader's own name, the
dataset variables, ``datasets["train"]``), the dataset constructor's split arguments
(``CIFAR10(root, train=True)``, ``split="train"``, ``mode="val"``, ``is_train=False``), and the
dataset class's name. Evaluation wins over training (``train_eval_loader`` evaluates on the
training data); a time series (``TimeSeriesDataset``, ``forecast_loader``) is its own kind,
since shuffling it may be wrong.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, literal

if TYPE_CHECKING:
    from trainlint.model.frameworks.data import DataPipelines, LoaderSite


class Split(enum.Enum):
    TRAIN = "train"
    EVAL = "eval"
    TIME_SERIES = "time series"


_TRAIN = re.compile(r"(^|[_.\d])(train|training|tr)($|[_.\d]|set|data|loader|dl|ds|dataset)", re.I)
_TRAIN_CAMEL = re.compile(r"Train(ing)?(Set|Data|Dataset|Loader)?$|^Train")
_EVAL = re.compile(
    r"(^|[_.\d])(val|valid|validation|test|testing|eval|evaluation|dev|holdout|infer|inference|"
    r"predict|query|gallery)($|[_.\d]|set|data|loader|dl|ds|dataset)",
    re.I,
)
_EVAL_CAMEL = re.compile(r"(Val|Valid|Validation|Test|Eval|Evaluation)(Set|Data|Dataset|Loader)?$")
_TIME_SERIES = re.compile(r"time_?series|timeseries|forecast|temporal", re.I)
_SPLIT_KEYWORDS = ("split", "mode", "phase", "subset", "stage", "image_set", "set_name")
_FLAG_KEYWORDS = ("train", "is_train", "training", "is_training")


def split_of(data: DataPipelines, site: LoaderSite) -> Split | None:
    """The split the loader reads; when it is built in a helper from a parameter, each caller's
    data is judged on its own and training wins (the helper then builds the train loader)."""
    sources = data.sources_of(site)
    if not sources:
        return _classify([site.target or ""], set())
    found = set()
    for source in sources:
        names = [site.target or "", *source.names]
        flags: set[Split] = set()
        if source.cls is not None:
            names.append(source.cls.info.name)
        if source.call is not None:
            names.append(dotted(source.call.func) or "")
            flag = _constructor_split(source.call)
            if flag is not None:
                flags.add(flag)
        found.add(_classify(names, flags))
    for split in (Split.TIME_SERIES, Split.TRAIN, Split.EVAL):
        if split in found:
            return split
    return None


def _classify(names: list[str], flags: set[Split]) -> Split | None:
    short = [n.rsplit(".", 1)[-1] for n in names if n]
    if any(_TIME_SERIES.search(n) for n in short):
        return Split.TIME_SERIES
    if Split.EVAL in flags or any(_EVAL.search(n) or _EVAL_CAMEL.search(n) for n in short):
        return Split.EVAL
    if Split.TRAIN in flags or any(_TRAIN.search(n) or _TRAIN_CAMEL.search(n) for n in short):
        return Split.TRAIN
    return None


def _constructor_split(call: cst.Call) -> Split | None:
    for arg in call.args:
        if arg.keyword is None:
            continue
        key = arg.keyword.value
        value = literal(arg.value, None)
        if key in _FLAG_KEYWORDS and isinstance(value, bool):
            return Split.TRAIN if value else Split.EVAL
        if key in _SPLIT_KEYWORDS and isinstance(value, str):
            if _EVAL.search(value):
                return Split.EVAL
            if _TRAIN.search(value):
                return Split.TRAIN
    return None
