"""What a keras callable holds that depends on ``training``, and the syntax it is read from.

:class:`HeldLayers` is the answer of :mod:`.keras_modes`; the functions here read single
calls, classes and functions (a call passing the mode, a layer built with ``dropout=``, the
attributes a class calls like layers, a ``call()`` branching on ``training``), and
:class:`BuilderFlags`, which decides the layers a builder function adds under ``if flag:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import bare_names, descendants, dotted, keyword, literal
from trainlint.model.syntax.scopes import argument_for
from trainlint.model.values.mode_layers import ModeLayers

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo, Scope

_DROPOUT_ARGUMENTS = ("dropout", "recurrent_dropout", "attention_dropout")


@dataclass(frozen=True)
class HeldLayers(ModeLayers):
    """The training-dependent layers found in a keras callable (``Dropout``,
    ``BatchNormalization``...), whether everything in it could be read (``complete``), and,
    when not, whether what was not read lies outside this file (``external``: a loaded
    model, another library's layer, a model passed in) or is same-file code. The torch
    answer (:class:`~trainlint.model.values.mode_layers.ModeLayers`) plus ``external``."""

    complete: bool = True
    external: bool = False

    def __or__(self, other: HeldLayers) -> HeldLayers:  # type: ignore[override]
        layers = tuple(dict.fromkeys(self.layers + other.layers))
        return HeldLayers(layers, self.complete and other.complete, self.external or other.external)


NONE = HeldLayers()
LOCAL_UNKNOWN = HeldLayers(complete=False)
EXTERNAL = HeldLayers(complete=False, external=True)


def holding(layer: str) -> HeldLayers:
    return HeldLayers((layer,))


def aliased_layer(model: TrainingModel, layer: cst.Call, scope: Scope) -> cst.Call:
    """``BatchNorm()`` where ``BatchNorm = tf.keras.layers.BatchNormalization`` or ``Conv =
    functools.partial(tf.keras.layers.Conv2D, padding="same")`` (a builder's shorthand, bound
    once in it or at module level): the layer call as if written with the class itself."""
    if not isinstance(layer.func, cst.Name):
        return layer
    bindings = [b for b in model.lookup(layer.func.value, scope) if not b.augmented]
    if len(bindings) != 1 or bindings[0].unpack_index is not None:
        return layer
    value = bindings[0].value
    if isinstance(value, cst.Call) and model.imports.qualify(value.func) == "functools.partial":
        value = value.args[0].value if value.args and not value.args[0].star else None
    if not isinstance(value, (cst.Attribute, cst.Name)) or not model.imports.qualify(value):
        return layer
    return layer.with_changes(func=value)


def passes_training(call: cst.Call) -> bool:
    """Whether a model call says which mode to run in."""
    if keyword(call, "training") is not None or any(a.star == "**" for a in call.args):
        return True
    positional = [a for a in call.args if a.keyword is None]
    return len(positional) >= 2 or any(a.star == "*" for a in positional)


def parameter_default(scope: Scope, name: str) -> cst.BaseExpression | None:
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return None
    params = node.params
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.name.value == name:
            return param.default
    return None


def has_dropout_argument(call: cst.Call) -> bool:
    for name in _DROPOUT_ARGUMENTS:
        given = keyword(call, name)
        if given is not None and literal(given, None) not in (0, 0.0):
            return True
    return False


def called_attributes(info: ClassInfo) -> set[str]:
    """Attributes the class calls like layers: ``self.encoder(x)``."""
    found: set[str] = set()
    for method in info.methods.values():
        for node in descendants(method.node):
            if isinstance(node, cst.Call):
                name = dotted(node.func) or ""
                if name.startswith("self.") and name.count(".") == 1:
                    found.add(name[len("self.") :])
    return found


def branches_on_training(info: ClassInfo) -> bool:
    """A ``call(self, x, training=...)`` that tests ``training`` itself (not only passes it)."""
    method = info.methods.get("call")
    if method is None or "training" not in method.params:
        return False
    for node in descendants(method.node):
        if isinstance(node, (cst.If, cst.IfExp, cst.While)) and "training" in bare_names(node.test):
            return True
    return False


class BuilderFlags:
    """Layers a builder function adds under ``if flag:`` (``if apply_dropout:``)."""

    def __init__(self) -> None:
        self._tests: dict[int, dict[int, list[tuple[cst.BaseExpression, bool]]]] = {}

    def guarded(
        self,
        node: cst.CSTNode,
        scope: Scope,
        held: HeldLayers,
        call: cst.Call | None = None,
    ) -> HeldLayers:
        """``held`` for a layer built under ``if`` tests: dropped when a test is known false
        (a flag parameter, given at ``call`` or by its default), unknown when not known."""
        if not held.has_any:
            return held
        for test, negated in self._tests_of(scope).get(id(node), []):
            value = _flag_value(test, scope, call)
            if value is None:
                return LOCAL_UNKNOWN
            if value is negated:
                return NONE
        return held

    def _tests_of(self, scope: Scope) -> dict[int, list[tuple[cst.BaseExpression, bool]]]:
        key = id(scope.node)
        if key not in self._tests:
            found: dict[int, list[tuple[cst.BaseExpression, bool]]] = {}
            for node in descendants(scope.node, stop=(cst.FunctionDef, cst.ClassDef)):
                if isinstance(node, cst.If):
                    branches = [(node.body, False)]
                    if node.orelse is not None:
                        branches.append((node.orelse, True))
                    for branch, negated in branches:
                        for inner in descendants(branch, stop=(cst.FunctionDef, cst.ClassDef)):
                            found.setdefault(id(inner), []).append((node.test, negated))
            self._tests[key] = found
        return self._tests[key]


def _flag_value(test: cst.BaseExpression, scope: Scope, call: cst.Call | None) -> bool | None:
    """The truth of ``flag`` / ``not flag`` for a parameter of ``scope``."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _flag_value(test.expression, scope, call)
        return None if inner is None else not inner
    if not isinstance(test, cst.Name) or test.value not in scope.params:
        return None
    given = argument_for(call, scope, test.value) if call is not None else None
    if given is None:
        given = parameter_default(scope, test.value)
    value = literal(given, None) if given is not None else None
    return bool(value) if isinstance(value, (bool, int)) else None
