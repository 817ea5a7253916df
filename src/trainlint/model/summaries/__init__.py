"""Summaries of the project's other modules, and the queries that read them.

* :mod:`.types` -- the JSON-able records: :class:`FunctionSummary` (effects on parameters and
  ``self``, what it returns), :class:`ClassSummary` (methods, nn.Module facts: final activation,
  Dropout/BatchNorm; meter facts), their JSON form and stable :func:`digest`;
* :mod:`.build` -- a definition's summary from its module's model (:func:`summarize`);
* :mod:`.queries` -- from one file's model: what a call runs in another module
  (:func:`external_call`), which class of another module an object is (:func:`instance_summary`).

The project index that finds and caches the summaries is :mod:`trainlint.project`.
"""

from trainlint.model.summaries.types import (
    ClassSummary,
    Definition,
    Effect,
    FunctionSummary,
    MeterInfo,
    Reexport,
    Returned,
    digest,
    from_json,
    to_json,
)

__all__ = [
    "ClassSummary",
    "Definition",
    "Effect",
    "FunctionSummary",
    "MeterInfo",
    "Reexport",
    "Returned",
    "digest",
    "from_json",
    "to_json",
]
