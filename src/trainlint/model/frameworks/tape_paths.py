"""What ``tape.gradient(target, sources)`` differentiates, and where the path to it breaks.

A tape differentiates only the operations it recorded, so the target must be computed inside
one of the tape's ``with`` blocks from the sources by TensorFlow ops. Two ways it goes wrong:

* **computed outside**: the latest binding of the target before the gradient call (or the
  target expression itself, when the call is outside the blocks) is an operation that runs
  outside every block of the tape (``loss = tf.reduce_mean(per_example)`` after the ``with``,
  ``loss += reg`` there). A mere rename or unpacking (``loss = total``, ``loss, acc = out``)
  runs no op and is fine;
* **cut inside**: along every path from the target back to what the tape can differentiate
  (keras models and layers, unknown callables, variables, ``self`` attributes, the gradient
  sources and watched tensors), the value leaves TensorFlow: ``.numpy()``, a NumPy function,
  ``float()``/``int()``, or ``tf.stop_gradient``. A cut on one operand only (a target built
  from a stopped teacher output and a live student output) is not a broken path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted, method_call, names_in

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.frameworks.tapes import Tape, TapeGradient
    from trainlint.model.syntax.scopes import Binding, Scope

#: Calls that leave TensorFlow, by qualified name; ``.numpy()`` is read as a method.
_CUTTING_BUILTINS = {"float", "int"}
_STOP_GRADIENT = {"tensorflow.stop_gradient"}
#: Attributes that are metadata, not values on the tape.
_METADATA = {"shape", "dtype", "name", "ndim"}


class Flow(enum.IntEnum):
    """What a value is to the tape, ordered for joining: the strongest wins."""

    NONE = 0  # constants, data: nothing to differentiate
    CUT = 1  # made from differentiable values through a cut only
    LIVE = 2  # connected to something the tape can differentiate


@dataclass(frozen=True)
class Cut:
    """Where the path leaves TensorFlow, and how (``.numpy()``, ``np.mean``, ``float()``...)."""

    node: cst.Call
    how: str


@dataclass(frozen=True)
class OutsideTarget:
    """The target of a gradient call computed outside its tape."""

    node: cst.CSTNode  # the statement (a binding) or the target expression
    binding: Binding | None


class TapePaths:
    """``TrainingModel.tape_paths``: the questions above, for one file."""

    max_depth = 25

    def __init__(self, model: TrainingModel) -> None:
        self.model = model

    # ------------------------------------------------------------------ computed outside
    def outside_target(self, gradient: TapeGradient) -> OutsideTarget | None:
        target = gradient.target
        tape = gradient.tape
        if target is None or gradient.site.scope is not tape.scope:
            return None
        if _is_operation(target):
            if tape.records(gradient.call):
                return None
            return OutsideTarget(target, None)
        name = dotted(target)
        if name is None or name.startswith("self."):
            return None
        bindings = self.model.lookup(name, gradient.site.scope, gradient.site.order)
        if not bindings or bindings[0].scope is not tape.scope:
            return None
        latest = bindings[0]
        if latest.order > gradient.site.order or tape.records(latest.statement):
            return None
        if latest.from_iteration or latest.value is None:
            return None
        if latest.augmented is None and not _is_operation(latest.value):
            return None  # a rename or an unpacking runs no op
        if latest.unpack_index is not None and not isinstance(latest.value, cst.Call):
            return None
        return OutsideTarget(latest.statement, latest)

    # ------------------------------------------------------------------ cut inside
    def cut_on_path(self, gradient: TapeGradient) -> Cut | None:
        """The cut every path from the target passes through, if there is one."""
        target = gradient.target
        if target is None:
            return None
        sources = names_in(gradient.sources) if gradient.sources is not None else set()
        walk = _Walk(
            self.model, gradient.tape, gradient.site.scope, sources | self._watched(gradient.tape)
        )
        flow, cut = walk.flow(target, gradient.site.order, 0)
        return cut if flow is Flow.CUT else None

    def _watched(self, tape: Tape) -> set[str]:
        found: set[str] = set()
        for site in self.model.tapes.recorded_calls(tape):
            method = method_call(site.node)
            if method is not None and method[1] == "watch" and dotted(method[0]) == tape.name:
                for arg in site.node.args:
                    found |= names_in(arg.value)
        return found


class _Walk:
    """One backward walk from a gradient target through the bindings its tape records."""

    def __init__(self, model: TrainingModel, tape: Tape, scope: Scope, live: set[str]) -> None:
        self.model = model
        self.tape = tape
        self.scope = scope
        self.live = live  # names the tape can differentiate: sources, watched tensors
        self.visited: set[int] = set()

    def flow(
        self, node: cst.BaseExpression, before: int | None, depth: int
    ) -> tuple[Flow, Cut | None]:
        if depth > TapePaths.max_depth:
            return Flow.LIVE, None
        if isinstance(node, (cst.Name, cst.Attribute)) and dotted(node) is not None:
            return self._name(node, before, depth)
        if isinstance(node, cst.Call):
            return self._call(node, before, depth)
        if isinstance(node, (cst.BinaryOperation, cst.BooleanOperation)):
            return self._join([node.left, node.right], before, depth)
        if isinstance(node, cst.UnaryOperation):
            return self.flow(node.expression, before, depth + 1)
        if isinstance(node, cst.Subscript):
            return self.flow(node.value, before, depth + 1)
        if isinstance(node, cst.Attribute):
            if node.attr.value in _METADATA:
                return Flow.NONE, None
            return self.flow(node.value, before, depth + 1)
        if isinstance(node, (cst.Tuple, cst.List)):
            values = [e.value for e in node.elements if isinstance(e, cst.Element)]
            return self._join(values, before, depth)
        if isinstance(node, cst.IfExp):
            return self._join([node.body, node.orelse], before, depth)
        if isinstance(
            node, (cst.Integer, cst.Float, cst.SimpleString, cst.FormattedString, cst.Lambda)
        ):
            return Flow.NONE, None
        return Flow.LIVE, None  # comprehensions and the rest: not followed, assumed connected

    def _join(
        self, nodes: list[cst.BaseExpression], before: int | None, depth: int
    ) -> tuple[Flow, Cut | None]:
        best, cut = Flow.NONE, None
        for node in nodes:
            flow, found = self.flow(node, before, depth + 1)
            if flow > best:
                best = flow
            if cut is None and found is not None:
                cut = found
            if best is Flow.LIVE:
                return best, None
        return best, cut

    def _name(
        self, node: cst.BaseExpression, before: int | None, depth: int
    ) -> tuple[Flow, Cut | None]:
        name = dotted(node) or ""
        if name.startswith("self.") or name in self.live or name.split(".", 1)[0] in self.live:
            return Flow.LIVE, None
        bindings = self.model.lookup(name, self.scope, before)
        if not bindings:
            if isinstance(node, cst.Attribute):
                return (
                    self.flow(node.value, before, depth + 1)
                    if node.attr.value not in _METADATA
                    else (Flow.NONE, None)
                )
            return Flow.NONE, None
        binding = bindings[0]
        if id(binding) in self.visited:
            return Flow.NONE, None
        if binding.value is None or not self.tape.records(binding.statement):
            return self._outside(binding)
        self.visited.add(id(binding))
        flow = self.flow(binding.value, binding.order, depth + 1)
        if binding.augmented is not None:
            previous = self._name(node, binding.order, depth + 1)
            flow = max((flow, previous), key=lambda f: f[0])
        return flow

    def _outside(self, binding: Binding) -> tuple[Flow, Cut | None]:
        """A value made before the tape started: a variable is live, anything else is data."""
        value = binding.value
        if isinstance(value, cst.Call):
            qualified = self.model.imports.qualify(value.func) or ""
            if qualified == "tensorflow.Variable":
                return Flow.LIVE, None
            if (
                self.model.keras_modes.of_callable(value.func, binding.scope or self.scope)
                is not None
            ):
                return Flow.LIVE, None
        return Flow.NONE, None

    def _call(self, call: cst.Call, before: int | None, depth: int) -> tuple[Flow, Cut | None]:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        arguments = [a.value for a in call.args]
        method = method_call(call)
        if method is not None and method[1] == "numpy" and not call.args:
            flow, _ = self.flow(method[0], before, depth + 1)
            return (Flow.CUT, Cut(call, "`.numpy()`")) if flow else (Flow.NONE, None)
        cut_how = None
        if is_under(qualified, "numpy"):
            cut_how = f"NumPy (`{model.text_of(call.func)}`)"
        elif qualified in _STOP_GRADIENT:
            cut_how = "`tf.stop_gradient`"
        elif (
            isinstance(call.func, cst.Name)
            and call.func.value in _CUTTING_BUILTINS
            and not _bound_here(model, call.func.value, self.scope)
        ):
            cut_how = f"`{call.func.value}()`"
        if cut_how is not None:
            flow, _ = self._join(arguments, before, depth)
            return (Flow.CUT, Cut(call, cut_how)) if flow else (Flow.NONE, None)
        if is_under(qualified, "tensorflow") and not is_under(qualified, "tensorflow.keras"):
            return self._join(arguments, before, depth)  # a TF op: connected through its inputs
        if _is_loss(model, call, self.scope):
            return self._join(arguments, before, depth)
        if method is not None and model.keras_modes.of_callable(call.func, self.scope) is None:
            # a tensor method (``x.sum()``): through its receiver and arguments
            return self._join([method[0], *arguments], before, depth)
        return Flow.LIVE, None  # a model, a layer, a helper: assumed to connect


def _is_operation(node: cst.BaseExpression) -> bool:
    return isinstance(node, (cst.Call, cst.BinaryOperation, cst.UnaryOperation))


def _bound_here(model: TrainingModel, name: str, scope: Scope) -> bool:
    """A local ``float``/``int`` (shadowing the builtin)."""
    return bool(model.lookup(name, scope)) or name in scope.params


def _is_loss(model: TrainingModel, call: cst.Call, scope: Scope) -> bool:
    """A keras loss (object or function): its output depends only on its inputs."""
    qualified = model.imports.qualify(call.func) or ""
    if is_under(qualified, "tensorflow.keras.losses"):
        return True
    value = model.value_of(call.func, scope)
    return value is not None and is_under(value.kind, "tensorflow.keras.losses")
