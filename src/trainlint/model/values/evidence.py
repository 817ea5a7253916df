"""Whether a value is KNOWN to be a torch tensor (never by its name).

Tensor evidence, followed through the latest binding before the use: a torch function that
makes a tensor (``torch.zeros``, ``torch.cat``, ``F.relu``, ``torch.FloatTensor(...)``), a
tensor method applied to a tensor (``x.float()``, ``x[0]``, ``x.data``, arithmetic), the
output of a known torch module (see :mod:`.modules`) or of a torch loss, a same-file function
whose every return is a tensor (or one of another project module whose summary says it returns
logits, probabilities or a reduced loss), a parameter annotated ``torch.Tensor``, an element of
``X.parameters()``, and a batch of a ``torch.utils.data.DataLoader`` that keeps the default
``collate_fn`` (default collation makes tensors; a custom one may build objects whose ``.to()``
works in place, like PyG's ``Batch`` or HF's ``BatchEncoding``).

Dataset evidence: a pipeline that :mod:`..frameworks.tfdata` follows back to a ``tf.data``
source (``Dataset.from_tensor_slices``, ``TFRecordDataset``, keras' ``*_dataset_from_directory``,
``tfds.load(..., split="train")`` or one split of it), through the dataset methods chained on
it and the names it is bound to: TL502 and TL604/TL605 read datasets the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted, keyword, method_call, positional, target_names
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, Scope

#: Tensor methods that return a new tensor and leave the receiver as it was.
OUT_OF_PLACE_METHODS = frozenset(
    {
        "to", "cuda", "cpu", "float", "half", "double", "bfloat16", "long", "int", "bool",
        "byte", "type", "type_as", "detach", "clone", "contiguous", "pin_memory", "view",
        "view_as", "reshape", "reshape_as", "squeeze", "unsqueeze", "flatten", "permute",
        "transpose", "t", "expand", "expand_as", "repeat", "clamp", "clip", "add", "sub", "mul",
        "div", "pow", "abs", "neg", "sqrt", "exp", "log", "sigmoid", "tanh", "relu", "softmax",
        "log_softmax", "masked_fill", "index_fill", "scatter", "round", "floor", "ceil",
    }
)  # fmt: skip
#: Other methods whose result is a tensor (in-place ones return their receiver).
_TENSOR_RESULT_METHODS = OUT_OF_PLACE_METHODS | {
    "add_", "sub_", "mul_", "div_", "clamp_", "clip_", "zero_", "fill_", "copy_", "detach_",
    "requires_grad_", "normal_", "uniform_", "sum", "mean", "std", "var", "prod", "cumsum",
    "norm", "matmul", "mm", "bmm", "exp_", "log_", "masked_fill_", "index_select", "gather",
    "narrow", "select", "masked_select", "argmax", "argmin", "new_zeros",
    "new_ones", "new_full", "new_empty", "new_tensor", "unsqueeze_", "squeeze_", "t_",
}  # fmt: skip
#: ``torch.X`` functions that return one tensor (not ``max``/``sort``: a tuple with ``dim``).
_TORCH_TENSOR_FUNCTIONS = frozenset(
    {
        "tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "rand", "randn",
        "randint", "randperm", "arange", "linspace", "logspace", "eye", "zeros_like",
        "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
        "cat", "concat", "stack", "hstack", "vstack", "matmul", "mm", "bmm", "einsum", "where",
        "sigmoid", "softmax", "log_softmax", "tanh", "relu", "exp", "log", "sqrt", "abs",
        "clamp", "clip", "flatten", "squeeze", "unsqueeze", "reshape", "transpose", "permute",
        "gather", "masked_fill", "mean", "sum", "prod", "cumsum", "mul", "add", "sub", "div",
        "pow", "outer", "diag", "tril", "triu", "bernoulli", "multinomial", "normal", "cdist",
        "roll", "flip", "argmax", "argmin", "sign", "index_select", "narrow", "repeat_interleave",
    }
)  # fmt: skip
#: Methods only tensors have among common objects (not ``size()`` or ``detach()``: a replay
#: buffer or a state object of the project may define those, with a ``to()`` in place; not
#: ``requires_grad_()``: modules have it too).
_TENSOR_ONLY_METHODS = {
    "dim", "numel", "unsqueeze", "permute", "contiguous", "masked_fill", "type_as",
    "new_zeros", "new_ones", "new_full", "new_tensor",
}  # fmt: skip
#: Attributes of a tensor that are tensors.
_TENSOR_ATTRIBUTES = {"data", "T", "mT", "real", "imag"}

#: ``tf.data.Dataset`` methods that return a new dataset.
DATASET_METHODS = frozenset({"shuffle", "batch", "map", "repeat", "prefetch", "cache", "filter"})
#: ``DataLoader(dataset, batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn)``
_COLLATE_POSITION = 6
_ITERATION_WRAPPERS = {"tqdm", "track", "iter", "enumerate", "progress_bar"}
_MAX_DEPTH = 8


class Evidence:
    """``is_tensor`` for the expressions of one file (memoized)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._memo: dict[tuple[str, int, int, int | None], bool] = {}
        self._pinned: list[cst.CSTNode] = []

    # ------------------------------------------------------------------ tensors
    def is_tensor(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> bool:
        """Whether ``expr`` is known to hold a torch tensor just before order ``before``."""
        return expr is not None and self._is(self._tensor, expr, scope, before, 0)

    def _tensor(self, expr: cst.BaseExpression, scope: Scope, before: int | None, depth: int):
        model = self.model
        if isinstance(expr, cst.Call):
            return self._tensor_call(expr, scope, before, depth)
        if isinstance(expr, cst.Subscript):
            return self._is(self._tensor, expr.value, scope, before, depth)
        if isinstance(expr, cst.BinaryOperation):
            return any(
                self._is(self._tensor, side, scope, before, depth)
                for side in (expr.left, expr.right)
            )
        if isinstance(expr, cst.UnaryOperation) and not isinstance(expr.operator, cst.Not):
            return self._is(self._tensor, expr.expression, scope, before, depth)
        name = dotted(expr)
        if name is None:
            return False
        if (
            isinstance(expr, cst.Attribute)
            and expr.attr.value in _TENSOR_ATTRIBUTES
            and self._is(self._tensor, expr.value, scope, before, depth)
        ):
            return True
        if model.imports.qualify_dotted(name):
            return False  # a library attribute
        bindings = model.lookup(name, scope, before)
        if not bindings:
            if name in scope.params:
                annotation = scope.annotations.get(name, "")
                return _annotated_tensor(annotation) or (
                    not annotation and self._used_as_tensor(name, scope)
                )
            return self._loop_element(name, scope, before)
        return self._tensor_binding(bindings[0], scope, depth)

    def _tensor_binding(self, binding: Binding, scope: Scope, depth: int) -> bool:
        value, inner = binding.value, binding.scope or scope
        if value is None or binding.augmented or isinstance(binding.statement, cst.WithItem):
            return False
        if binding.from_iteration:
            return self._iterated_tensor(binding.target, value, binding.statement, inner)
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                elements = value.elements
                if binding.unpack_index >= len(elements):
                    return False
                value = elements[binding.unpack_index].value
            elif not (isinstance(value, cst.Call) and self._module_output(value, inner)):
                return False  # ``out, hidden = lstm(x)``: a module's outputs are tensors
        return self._is(self._tensor, value, inner, binding.order, depth)

    def _tensor_call(self, call: cst.Call, scope: Scope, before: int | None, depth: int) -> bool:
        model = self.model
        qualified = model.imports.qualify(call.func)
        if qualified and (_torch_makes_tensor(qualified) or _project_tensor(model, call, scope)):
            return True
        if qualified:
            return False
        method = method_call(call)
        if method is not None:
            receiver, name = method
            if name in _TENSOR_RESULT_METHODS and self._is(
                self._tensor, receiver, scope, before, depth
            ):
                return True
        if self._module_output(call, scope):
            return True
        callee = model.callee(call, scope, external=False)
        if callee is not None and callee.returns and callee is not scope:
            return all(
                self._is(self._tensor, returned, callee, order, depth)
                for returned, order in zip(callee.returns, callee.return_orders, strict=False)
            )
        return False

    def _module_output(self, call: cst.Call, scope: Scope) -> bool:
        """``model(x)`` for a known torch module, ``criterion(out, y)`` for a torch loss."""
        func = call.func
        if isinstance(func, cst.Call) or not dotted(func):
            return False
        if self.model.is_known_module(func, scope):
            return True
        value = self.model.value_of(func, scope)
        return (
            value is not None
            and value.role is Role.CRITERION
            and value.call is not None
            and is_under(value.kind, "torch.nn")
        )

    def _used_as_tensor(self, name: str, scope: Scope) -> bool:
        """A parameter the function uses as only a tensor can be used: ``x.unsqueeze(1)``,
        passed to a torch function (``torch.cat``, ``F.relu``) or to a known torch module
        (``self.rnn(x)``)."""
        model = self.model
        for site in model.calls_in(scope):
            call = site.node
            method = method_call(call)
            if method is not None and dotted(method[0]) == name:
                if method[1] in _TENSOR_ONLY_METHODS:
                    return True
                continue
            if not any(a.keyword is None and dotted(a.value) == name for a in call.args):
                continue
            if site.qualified and _torch_makes_tensor(site.qualified):
                return True
            if not site.qualified and self._module_output(call, scope):
                return True
        return False

    def _loop_element(self, name: str, scope: Scope, before: int | None) -> bool:
        """A name bound in a nested loop target (``for i, (x, y) in enumerate(loader)``),
        which the binding table does not record."""
        for loop in self.model.loops:
            node = loop.node
            if loop.scope is not scope or not isinstance(node, cst.For):
                continue
            if not isinstance(node.target, cst.Tuple) or before is None or loop.order > before:
                continue
            if name in target_names(node.target):
                return self._iterated_tensor(name, node.iter, node, scope)
        return False

    def _iterated_tensor(
        self, name: str, iterable: cst.BaseExpression, loop: cst.CSTNode, scope: Scope
    ) -> bool:
        """An element of ``X.parameters()``, or a batch of a default-collated DataLoader."""
        target = loop.target if isinstance(loop, cst.For) else None
        source, counter = _unwrap(iterable, target)
        if name == counter:
            return False
        method = method_call(source)
        if method is not None and method[1] == "parameters" and not source.args:  # type: ignore[union-attr]
            return True
        value = self.model.value_of(source, scope)
        if value is None or value.role is not Role.LOADER or value.call is None:
            return False
        if not is_under(value.kind, "torch.utils.data"):
            return False  # PyG's DataLoader yields ``Batch`` objects, whose ``to()`` is in place
        call = value.call
        if any(a.star == "**" for a in call.args) or keyword(call, "collate_fn") is not None:
            return False
        return positional(call, _COLLATE_POSITION) is None

    # ------------------------------------------------------------------ datasets
    def is_dataset(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> bool:
        """Whether ``expr`` is known to hold a ``tf.data.Dataset``."""
        return expr is not None and self._is(self._dataset, expr, scope, before, 0)

    def _dataset(self, expr: cst.BaseExpression, scope: Scope, before: int | None, depth: int):
        # one reading of tf.data pipelines: the same as TL604/TL605's (frameworks.tfdata)
        return self.model.tfdata.pipeline_of(expr, scope, before).from_source

    # ------------------------------------------------------------------ plumbing
    def _is(self, compute, expr, scope: Scope, before: int | None, depth: int) -> bool:
        if depth > _MAX_DEPTH:
            return False
        key = (compute.__name__, id(expr), id(scope), before)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = False  # a cycle through bindings proves nothing
        found = bool(compute(expr, scope, before, depth + 1))
        self._memo[key] = found
        self._pinned.append(expr)
        return found


def _torch_makes_tensor(qualified: str) -> bool:
    if is_under(qualified, "torch.nn.functional"):
        return qualified.rsplit(".", 1)[-1] not in ("max_pool2d_with_indices", "unfold")
    if not is_under(qualified, "torch"):
        return False
    head, _, last = qualified.rpartition(".")
    if head in ("torch", "torch.cuda") and last.endswith("Tensor") and last != "is_tensor":
        return True  # ``torch.FloatTensor(...)``, ``torch.cuda.LongTensor(...)``
    return head in ("torch", "torch.special", "torch.linalg", "torch.fft") and (
        last in _TORCH_TENSOR_FUNCTIONS
    )


def _project_tensor(model: TrainingModel, call: cst.Call, scope: Scope) -> bool:
    """A function of another project module whose summary says it returns logits,
    probabilities... or a reduced loss: a tensor."""
    returned = model.returned_summary(call, scope)
    if returned is None or returned.role is not None:
        return False
    return returned.activation != "unknown" or returned.reduction != "unknown"


def _annotated_tensor(annotation: str) -> bool:
    return annotation in ("torch.Tensor", "Tensor", "torch.FloatTensor", "torch.LongTensor")


def _unwrap(
    iterable: cst.BaseExpression, target: cst.BaseExpression | None
) -> tuple[cst.BaseExpression, str | None]:
    """``enumerate(tqdm(loader))`` -> ``loader``, and the name ``enumerate`` counts with."""
    counter = None
    while isinstance(iterable, cst.Call) and positional(iterable, 0) is not None:
        last = (dotted(iterable.func) or "").rsplit(".", 1)[-1]
        if last not in _ITERATION_WRAPPERS:
            break
        if last == "enumerate" and isinstance(target, cst.Tuple) and target.elements:
            counter = dotted(target.elements[0].value)
        iterable = positional(iterable, 0)  # type: ignore[assignment]
    return iterable, counter
