"""Which ``tf.data`` map functions draw randomness (augmentation), so caching after them
freezes one draw for every epoch.

A function draws when it calls, directly or through same-file functions (nested ones too):

* TensorFlow's random ops: ``tf.random.*`` (not the ``stateless_*`` ones, whose result a seed
  fixes), TF1's ``tf.random_uniform``/``tf.random_crop``/..., ``tf.image.random_*`` (not
  ``stateless_random_*``), ``tf.nn.dropout``, TensorFlow Addons' ``tfa.image.random_*``;
* a keras random preprocessing layer (``RandomFlip``, ``RandomRotation``, ``RandAugment``,
  ... and keras_cv's), constructed inline, bound to a name, or inside a ``Sequential`` it
  calls (``data_augmentation(x)``), unless called with ``training=False``;
* Python's or NumPy's global RNG inside a ``tf.py_function``/``tf.numpy_function`` body (only
  there: elsewhere a NumPy draw runs once, when the function is traced).

A map function is a lambda, a same-file function or method, ``functools.partial`` of one, or
an instance of a same-file class with ``__call__``. Anything else is taken not to draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_layers import keras_name
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import (
    argument,
    descendants,
    dotted,
    ends_in_jump,
    keyword,
    literal,
)
from trainlint.model.syntax.scopes import argument_for

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo, Scope

_TF_RANDOM_MODULES = (
    "tensorflow.random",
    "tensorflow.compat.v1.random",
    "tensorflow.compat.v2.random",
)
_NOT_DRAWS = {
    "set_seed",
    "Generator",
    "get_global_generator",
    "set_global_generator",
    "create_rng_state",
    "Algorithm",
    "all_candidate_sampler",
}
#: TF1 spellings at the top level: ``tf.random_uniform``, ``tf.compat.v1.random_crop``.
_TF1_DRAWS = {
    "random_uniform",
    "random_normal",
    "random_crop",
    "random_shuffle",
    "random_gamma",
    "random_poisson",
    "truncated_normal",
    "multinomial",
}
_KERAS_RANDOM_LAYERS = {"RandAugment", "AugMix", "CutMix", "MixUp", "RandomChoice"}
_PY_FUNCTIONS = {
    "tensorflow.py_function",
    "tensorflow.numpy_function",
    "tensorflow.compat.v1.py_func",
    "tensorflow.py_func",
}
_NUMPY_NOT_DRAWS = {"seed", "default_rng", "RandomState", "Generator", "get_state", "set_state"}

#: A function's body (or a lambda's), its scope, and the values known for names in it
#: (``augment=False`` passed by ``partial``, ``self.train`` set from a constructor argument).
FunctionRef = tuple[cst.CSTNode, "Scope", dict[str, object]]


def tf_draw(qualified: str) -> bool:
    """Whether the qualified name is a TensorFlow op that draws random numbers."""
    last = qualified.rsplit(".", 1)[-1]
    if is_under(qualified, *_TF_RANDOM_MODULES):
        return not last.startswith("stateless") and last not in _NOT_DRAWS
    if is_under(qualified, "tensorflow.image", "tensorflow_addons.image"):
        return last.startswith("random_")
    if qualified in ("tensorflow." + last, "tensorflow.compat.v1." + last):
        return last in _TF1_DRAWS
    return qualified == "tensorflow.nn.dropout"


def random_layer(model: TrainingModel, constructor: cst.Call) -> bool:
    """A keras (or keras_cv) layer that augments at random."""
    qualified = keras_name(model.imports, constructor.func)
    if not qualified.startswith("tensorflow.keras.layers."):
        qualified = model.imports.qualify(constructor.func) or ""
        if not is_under(qualified, "keras_cv.layers"):
            return False
    last = qualified.rsplit(".", 1)[-1]
    return last.startswith("Random") or last in _KERAS_RANDOM_LAYERS


class RandomMaps:
    """``draw_in(function, scope)``: the call by which a map function draws, if any."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model

    def draw_in(
        self, function: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> cst.Call | None:
        """The random call ``function`` makes when run (None when none is seen)."""
        for body, owner, known in self._functions(function, scope, before, 0):
            found = self._draw_in_body(body, owner, known, False, 0, set())
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ functions referenced
    def _functions(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None, depth: int
    ) -> list[FunctionRef]:
        if expr is None or depth > 4:
            return []
        if isinstance(expr, cst.Lambda):
            return [(expr.body, scope, {})]
        if isinstance(expr, cst.Call):
            qualified = self.model.imports.qualify(expr.func) or dotted(expr.func) or ""
            if qualified.rsplit(".", 1)[-1] == "partial" and expr.args:
                found = self._functions(expr.args[0].value, scope, before, depth + 1)
                given = {
                    a.keyword.value: literal(a.value, _UNKNOWN) for a in expr.args if a.keyword
                }
                return [(body, owner, {**known, **given}) for body, owner, known in found]
            info = self.model.classes.get(dotted(expr.func) or "")
            method = self.model.method(info, "__call__") if info is not None else None
            if info is None or method is None:
                return []
            return [(method.node, method, self._instance_values(expr, info))]
        name = dotted(expr)
        if name is None:
            return []
        if name.startswith("self.") and scope.cls is not None:
            method = self.model.method(scope.cls, name[len("self.") :])
            if method is not None:
                return [(method.node, method, _defaults(method))]
        current: Scope | None = scope
        while current is not None:
            if name in current.functions and name not in current.bindings:
                found = current.functions[name]
                return [(found.node, found, _defaults(found))]
            current = current.parent
        for binding in self.model.lookup(name, scope, before)[:1]:
            if binding.value is not None and binding.unpack_index is None:
                owner = binding.scope or scope
                return self._functions(binding.value, owner, binding.order, depth + 1)
        return []

    # ------------------------------------------------------------------ bodies
    def _draw_in_body(
        self,
        body: cst.CSTNode,
        scope: Scope,
        known: dict[str, object],
        python: bool,
        depth: int,
        seen: set[int],
    ) -> cst.Call | None:
        if id(body) in seen or depth > 5:
            return None
        seen.add(id(body))
        if isinstance(body, cst.FunctionDef):
            calls = [(site.node, site.statement_order) for site in self._calls_of(scope)]
        else:
            calls = [(c, None) for c in descendants(body) if isinstance(c, cst.Call)]
            if isinstance(body, cst.Call):
                calls.insert(0, (body, None))
        dead = _dead_calls(body, known) if known else set()
        for call, order in calls:
            if id(call) in dead:
                continue
            found = self._draw_by_call(call, scope, known, order, python, depth, seen)
            if found is not None:
                return found
        return None

    def _calls_of(self, scope: Scope) -> list:
        """The calls of a function and of the functions nested in it."""
        sites = list(self.model.calls_in(scope))
        for nested in scope.functions.values():
            sites += self._calls_of(nested)
        return sites

    def _draw_by_call(
        self,
        call: cst.Call,
        scope: Scope,
        known: dict[str, object],
        order: int | None,
        python: bool,
        depth: int,
        seen: set[int],
    ) -> cst.Call | None:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        if tf_draw(qualified):
            return call
        if python and _python_draw(qualified):
            return call
        if qualified in _PY_FUNCTIONS:
            target = argument(call, 0, "func")
            for body, owner, values in self._functions(target, scope, order, 0):
                found = self._draw_in_body(body, owner, values, True, depth + 1, seen)
                if found is not None:
                    return found
            return None
        if isinstance(call.func, cst.Call) and random_layer(model, call.func):
            return call if _training_not_off(call) else None  # ``RandomFlip()(x)``
        if self._random_layer_object(call, scope, order):
            return call if _training_not_off(call) else None
        callee = model.callee(call, scope, external=False)
        if callee is not None:
            values = _passed_values(call, callee, known)
            return self._draw_in_body(callee.node, callee, values, python, depth + 1, seen)
        return None

    def _instance_values(self, constructor: cst.Call, info: ClassInfo) -> dict[str, object]:
        """``self.x`` set in ``__init__`` from a parameter, as this constructor call sets it."""
        init = self.model.method(info, "__init__")
        if init is None:
            return {}
        passed = _passed_values(constructor, init, {})
        found: dict[str, object] = {}
        for attribute, bindings in info.attributes.items():
            if len(bindings) == 1 and bindings[0].scope is init:
                value = bindings[0].value
                if isinstance(value, cst.Name) and value.value in passed:
                    found["self." + attribute] = passed[value.value]
        return found

    def _random_layer_object(self, call: cst.Call, scope: Scope, order: int | None) -> bool:
        """``augment(x)`` where ``augment`` is a random layer or a model holding one."""
        name = dotted(call.func)
        if name is None:
            return False
        for binding in self.model.lookup(name, scope, order)[:1]:
            value = binding.value
            unpacked = binding.unpack_index is not None
            if isinstance(value, cst.Call) and not unpacked and random_layer(self.model, value):
                return True
        found = self.model.keras.model_of(call.func, scope, order)
        return found is not None and any(random_layer(self.model, c) for c in found.layers)


_UNKNOWN = object()


def _defaults(scope: Scope) -> dict[str, object]:
    """Parameters' literal defaults (what a parameter holds when no argument is passed)."""
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return {}
    params = node.params
    found: dict[str, object] = {}
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.default is not None:
            found[param.name.value] = literal(param.default, _UNKNOWN)
    return found


def _passed_values(call: cst.Call, callee: Scope, known: dict[str, object]) -> dict[str, object]:
    """What each parameter of ``callee`` holds for ``call``: literals, or names whose value the
    caller knows; parameters left out keep their defaults."""
    found = _defaults(callee)
    for param in callee.params:
        given = argument_for(call, callee, param)
        if given is None:
            continue
        name = dotted(given)
        found[param] = known.get(name, _UNKNOWN) if name in known else literal(given, _UNKNOWN)
    return found


def _truth(test: cst.BaseExpression, known: dict[str, object]) -> bool | None:
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _truth(test.expression, known)
        return None if inner is None else not inner
    value = known.get(dotted(test) or "", _UNKNOWN)
    return bool(value) if isinstance(value, (bool, int, type(None))) else None


def _dead_calls(body: cst.CSTNode, known: dict[str, object]) -> set[int]:
    """Calls the known values rule out: in the arm of an ``if`` that cannot run (``if
    self.train:`` for an instance built with ``train=False``), and after an ``if`` whose
    running arm always returns (``if not training: return x``)."""
    dead: set[int] = set()
    blocks = [n for n in (body, *descendants(body)) if isinstance(n, cst.IndentedBlock)]
    for block in blocks:
        finished = False
        for statement in block.body:
            if finished:
                dead |= {id(c) for c in descendants(statement) if isinstance(c, cst.Call)}
                continue
            if not isinstance(statement, cst.If):
                continue
            truth = _truth(statement.test, known)
            if truth is None:
                continue
            arm = statement.body if truth is False else statement.orelse
            if arm is not None:
                dead |= {id(c) for c in descendants(arm) if isinstance(c, cst.Call)}
            running = statement.body if truth else statement.orelse
            if isinstance(running, cst.Else):
                running = running.body
            finished = isinstance(running, cst.BaseSuite) and ends_in_jump(running)
    return dead


def _python_draw(qualified: str) -> bool:
    last = qualified.rsplit(".", 1)[-1]
    if is_under(qualified, "numpy.random"):
        return last not in _NUMPY_NOT_DRAWS
    return is_under(qualified, "random") and last not in ("seed", "Random", "SystemRandom")


def _training_not_off(call: cst.Call) -> bool:
    return literal(keyword(call, "training"), None) is not False
