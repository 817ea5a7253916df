"""The tensor-kind lattice: what a tensor holds (logits, probabilities, log-probabilities, ...).

A :class:`TensorKind` says what values a tensor holds and what made them: the producer (a
``Linear`` layer, a softmax call, ``torch.randn``), the softmax axis, the width of a linear
layer's output when it is a literal, and, for an activation or a clamp, the kind of the
tensor it was applied to (``source``), so that "a softmax over the one-unit output of a
``Linear``" or "a ReLU on logits" can be told. ``applied`` is the call that applies the
activation in the analyzed file (``F.softmax(x, 1)``, ``self.softmax(out)``): fixes edit it.

Kinds are facts about values, never about names. They can be written to and read from plain
data (:meth:`TensorKind.to_fact` / :meth:`TensorKind.from_fact`) so that module summaries can
carry "``Net.forward`` returns probabilities (softmax over dim 1)" to other files.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import libcst as cst

from trainlint.model.syntax.names import ImportTable
from trainlint.model.syntax.nodes import method_call, positional


class Activation(enum.Enum):
    LOGITS = "logits"  # a linear map's output: any real number
    PROBABILITIES = "probabilities"  # after sigmoid/softmax: in [0, 1]
    LOG_PROBABILITIES = "log-probabilities"  # after log_softmax/logsigmoid
    UNBOUNDED = "unbounded"  # e.g. torch.randn: any real number, not from a layer
    BOUNDED = "bounded"  # clamped, or drawn from [0, 1): not logits, maybe not probabilities
    NON_NEGATIVE = "non-negative"  # after ReLU and friends
    UNKNOWN = "unknown"


#: The axis of a softmax written as something other than a literal (``dim=self.dim``).
UNRESOLVED_AXIS = "?"


@dataclass(frozen=True)
class TensorKind:
    activation: Activation
    #: What produced it, for messages: "nn.Linear", "sigmoid", "softmax", "torch.randn", ...
    producer: str = ""
    #: softmax/log_softmax axis: a literal, ``UNRESOLVED_AXIS``, or None when not given.
    axis: object = None
    #: The producing node in this file: the activation call or the layer's constructor.
    node: cst.CSTNode | None = field(default=None, compare=False, repr=False)
    #: For activations and clamps: what they were applied to (e.g. a Linear's logits).
    source: TensorKind | None = None
    #: Output units of a linear layer, when written as a literal (``nn.Linear(h, 1)``: 1).
    width: int | None = None
    #: The call applying the activation in this file (``F.softmax(x, 1)``, ``self.sm(out)``).
    applied: cst.Call | None = field(default=None, compare=False, repr=False)
    #: What ``applied`` applies the activation to (``x`` in ``x.softmax(-1)``).
    operand: cst.BaseExpression | None = field(default=None, compare=False, repr=False)
    #: Where the kind was made when that is another file: "models.py:12" (for messages).
    origin: str = ""

    @property
    def is_real_valued(self) -> bool:
        """Values that are not probabilities: logits or an unbounded factory."""
        return self.activation in (Activation.LOGITS, Activation.UNBOUNDED)

    @property
    def is_squashed(self) -> bool:
        """Probabilities from a sigmoid or a softmax (what logits losses must not receive)."""
        return self.activation is Activation.PROBABILITIES and self.producer in (
            "sigmoid",
            "softmax",
        )

    @property
    def is_linear_output(self) -> bool:
        """Logits of a linear map, whose last axis is certainly the class/feature axis."""
        return self.activation is Activation.LOGITS and self.producer in (
            "nn.Linear",
            "nn.LazyLinear",
            "nn.Bilinear",
            "F.linear",
            "a matrix product",
        )

    def with_source(self, source: TensorKind) -> TensorKind:
        if source.activation is Activation.UNKNOWN:
            return self
        return replace(self, source=source)

    # ------------------------------------------------------------------ summaries
    def to_fact(self) -> dict[str, Any]:
        """Plain data for a module summary (nodes stay behind: they belong to one file)."""
        fact: dict[str, Any] = {"activation": self.activation.value, "producer": self.producer}
        if isinstance(self.axis, (int, str)) and not isinstance(self.axis, bool):
            fact["axis"] = self.axis
        if self.width is not None:
            fact["width"] = self.width
        if self.source is not None:
            fact["source"] = self.source.to_fact()
        if self.origin:
            fact["origin"] = self.origin
        return fact

    @classmethod
    def from_fact(cls, fact: dict[str, Any], origin: str = "") -> TensorKind:
        try:
            activation = Activation(fact.get("activation"))
        except ValueError:
            return UNKNOWN
        source = fact.get("source")
        width = fact.get("width")
        return cls(
            activation,
            str(fact.get("producer") or ""),
            fact.get("axis"),
            source=cls.from_fact(source) if isinstance(source, dict) else None,
            width=width if isinstance(width, int) else None,
            origin=str(fact.get("origin") or origin),
        )


UNKNOWN = TensorKind(Activation.UNKNOWN)


def join(kinds: Iterable[TensorKind]) -> TensorKind:
    """What a value holds when it may come from any of ``kinds`` (branches, several returns):
    the first of them when they all agree on the activation, else ``UNKNOWN``."""
    found = list(kinds)
    if not found or len({k.activation for k in found}) != 1:
        return UNKNOWN
    return found[0]


# ---------------------------------------------------------------------- library producers
SIGMOID = {
    "torch.sigmoid",
    "torch.nn.functional.sigmoid",
    "torch.special.expit",
    "tensorflow.sigmoid",
    "tensorflow.math.sigmoid",
    "tensorflow.nn.sigmoid",
    "tensorflow.keras.activations.sigmoid",
    "tensorflow.keras.backend.sigmoid",
    "tensorflow.keras.ops.sigmoid",
    "scipy.special.expit",
}
SOFTMAX = {
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.special.softmax",
    "tensorflow.nn.softmax",
    "tensorflow.math.softmax",
    "tensorflow.keras.activations.softmax",
    "tensorflow.keras.backend.softmax",
    "tensorflow.keras.ops.softmax",
    "scipy.special.softmax",
}
LOG_SOFTMAX = {
    "torch.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.special.log_softmax",
    "torch.nn.functional.logsigmoid",
    "tensorflow.nn.log_softmax",
    "tensorflow.math.log_softmax",
    "tensorflow.math.log_sigmoid",
    "tensorflow.keras.activations.log_softmax",
    "tensorflow.keras.ops.log_softmax",
    "tensorflow.keras.ops.log_sigmoid",
}
NON_NEGATIVE = {
    "torch.relu",
    "torch.nn.functional.relu",
    "torch.nn.functional.relu6",
    "torch.nn.functional.softplus",
    "torch.abs",
    "tensorflow.nn.relu",
    "tensorflow.nn.relu6",
    "tensorflow.nn.softplus",
    "tensorflow.keras.activations.relu",
    "tensorflow.keras.ops.relu",
}
UNBOUNDED_FACTORIES = {
    "torch.randn",
    "torch.randn_like",
    "torch.normal",
    "tensorflow.random.normal",
    "tensorflow.random.truncated_normal",
    "numpy.random.randn",
    "numpy.random.normal",
}
BOUNDED = {
    "torch.clamp",
    "torch.clip",
    "torch.rand",
    "torch.rand_like",
    "tensorflow.clip_by_value",
    "tensorflow.random.uniform",
    "numpy.clip",
    "numpy.random.rand",
    "numpy.random.uniform",
    "tensorflow.keras.backend.clip",
    "tensorflow.keras.ops.clip",
}
#: Clamps (as opposed to bounded random factories): their first argument is what they bound.
CLAMPS = {
    "torch.clamp",
    "torch.clip",
    "tensorflow.clip_by_value",
    "numpy.clip",
    "tensorflow.keras.backend.clip",
    "tensorflow.keras.ops.clip",
}
MATRIX_PRODUCTS = {
    "tensorflow.matmul",
    "tensorflow.linalg.matmul",
    "tensorflow.nn.xw_plus_b",
    "tensorflow.keras.backend.dot",
    "tensorflow.keras.ops.matmul",
    "torch.matmul",
    "torch.mm",
}
#: ``tf.add(a, b)`` / ``tf.nn.bias_add(value, bias)``: logits shifted by a bias stay logits.
BIAS_ADDS = {"tensorflow.add", "tensorflow.math.add", "tensorflow.nn.bias_add"}
#: Functions that keep what a tensor holds (their first argument's values, reshaped or masked).
SHAPE_FUNCTIONS = {
    "torch.squeeze",
    "torch.flatten",
    "torch.reshape",
    "tensorflow.squeeze",
    "tensorflow.reshape",
    "tensorflow.identity",
    "tensorflow.nn.dropout",
    "torch.nn.functional.dropout",
}
#: Methods that keep what a tensor holds (shape, dtype and device changes).
SHAPE_METHODS = {
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "flatten",
    "float",
    "double",
    "half",
    "to",
    "cuda",
    "cpu",
    "contiguous",
    "permute",
    "transpose",
    "view_as",
    "reshape_as",
    # selections and copies keep the values they pick
    "gather",
    "index_select",
    "masked_select",
    "select",
    "narrow",
    "expand",
    "expand_as",
    "repeat",
    "clone",
    "detach",
}
#: Shape methods/functions that keep the last axis as it was (dtype, device, copies): a linear
#: layer's width survives them; a reshape or squeeze moves other axes into the last one.
KEEPS_LAST_AXIS = {
    "float",
    "double",
    "half",
    "to",
    "cuda",
    "cpu",
    "contiguous",
    "clone",
    "detach",
    "tensorflow.identity",
    "tensorflow.nn.dropout",
    "torch.nn.functional.dropout",
}
#: Natural logarithms (``log_argument`` reads what they are applied to).
LOGS = {
    "torch.log",
    "numpy.log",
    "math.log",
    "tensorflow.math.log",
    "tensorflow.log",
    "tensorflow.keras.backend.log",
    "tensorflow.keras.ops.log",
    "jax.numpy.log",
}


def log_argument(imports: ImportTable, call: cst.Call) -> cst.BaseExpression | None:
    """``p`` for ``torch.log(p)``, ``np.log(p)``, ``K.log(p)``, ``tf.math.log(p)``, ``p.log()``."""
    qualified = imports.qualify(call.func) or ""
    if qualified in LOGS:
        return positional(call, 0)
    method = method_call(call)
    if method is not None and method[1] == "log" and not qualified and not call.args:
        return method[0]
    return None
