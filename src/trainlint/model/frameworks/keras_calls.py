"""Code inside a keras layer's or model's ``call()``, and whether it runs only while training.

* ``keras_call_method(model, scope)`` -- the ``call`` method of a same-file ``keras.layers.Layer``
  / ``keras.Model`` subclass that ``scope`` is, or is nested in (None otherwise);
* ``training_guarded(model, site, method)`` -- whether a call in that method runs under a
  training guard: an ``if``/conditional expression on the training flag around it
  (``tf.nn.dropout(x, r) if training else x``), an earlier ``if`` on it in the method (``if not
  training: return x``), a wrapper choosing by it (``tf.cond(training, lambda: ..., ...)``,
  ``K.in_train_phase``, ``smart_cond``), or an argument computed from it (``rate = self.rate
  if training else 0.0``). The flag is any name that says train/eval/inference/phase/mode
  (``training``, ``is_training``, ``self.training``, ``K.learning_phase()``,
  ``deterministic``): only silencing depends on the words, so a broad list is the safe side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import child_nodes, contains, descendants, names_in
from trainlint.model.values.types import ClassKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import CallSite, Scope

_KERAS_KINDS = (ClassKind.KERAS_LAYER, ClassKind.KERAS_MODEL)
_FLAG_WORDS = ("train", "infer", "eval", "test", "phase", "determin", "mode", "stochastic")


def keras_call_method(model: TrainingModel, scope: Scope) -> Scope | None:
    """The ``call()`` of a keras layer/model class that ``scope`` is or is nested in."""
    current: Scope | None = scope
    while current is not None:
        cls = current.cls
        if cls is not None and cls.methods.get("call") is current:
            return current if model.class_kind(cls) in _KERAS_KINDS else None
        current = current.parent
    return None


def mentions_training_flag(node: cst.CSTNode) -> bool:
    """Whether ``node`` reads a name that stands for the train/eval switch."""
    return any(
        any(word in part.lower().replace("model", "") for word in _FLAG_WORDS)
        for name in names_in(node)
        for part in name.split(".")
        if part != "self"
    )


def training_guarded(model: TrainingModel, site: CallSite, method: Scope) -> bool:
    call = site.node
    # the input tensor (first, or ``x=``) may be made under the flag (``bn(x, training=...)``)
    # and still be dropped unconditionally: only the other arguments (the rate) count
    others = [
        a
        for index, a in enumerate(call.args)
        if not (index == 0 and a.keyword is None)
        and not (a.keyword is not None and a.keyword.value == "x")
    ]
    if any(mentions_training_flag(a.value) for a in others):
        return True
    for argument in others:
        if isinstance(argument.value, cst.Name):
            for binding in model.lookup(argument.value.value, site.scope, site.statement_order):
                if binding.value is not None and mentions_training_flag(binding.value):
                    return True
    for ancestor, child in _path(method.node, call):
        if _guards(ancestor, child):
            return True
    return any(mentions_training_flag(test) for test in _earlier_tests(method.node, call))


def _guards(ancestor: cst.CSTNode, child: cst.CSTNode) -> bool:
    """Whether ``ancestor`` decides by the training flag if ``child`` (holding the call) runs."""
    if isinstance(ancestor, (cst.If, cst.While, cst.IfExp)):
        return child is not ancestor.test and mentions_training_flag(ancestor.test)
    if isinstance(ancestor, cst.BooleanOperation):
        return child is ancestor.right and mentions_training_flag(ancestor.left)
    if isinstance(ancestor, cst.Call):
        # ``tf.cond(training, lambda: dropout(x), lambda: x)``: a sibling argument decides
        return any(
            not contains(a.value, child) and mentions_training_flag(a.value) for a in ancestor.args
        )
    return False


def _path(root: cst.CSTNode, node: cst.CSTNode) -> list[tuple[cst.CSTNode, cst.CSTNode]]:
    """(ancestor, its child towards ``node``) pairs from ``root`` down to ``node``."""
    found: list[tuple[cst.CSTNode, cst.CSTNode]] = []
    current = root
    while current is not node:
        step = next((c for c in child_nodes(current) if contains(c, node)), None)
        if step is None:
            return []
        found.append((current, step))
        current = step
    return found


def _earlier_tests(root: cst.CSTNode, call: cst.Call) -> list[cst.BaseExpression]:
    """Tests of the ``if``/``while`` statements of a function body that come before ``call``
    (not those of functions nested in it)."""
    found: list[cst.BaseExpression] = []
    for node in descendants(root, stop=(cst.FunctionDef, cst.ClassDef, cst.Lambda)):
        if node is call:
            break
        if isinstance(node, (cst.If, cst.While)):
            found.append(node.test)
    return found
