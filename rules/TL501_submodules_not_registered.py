from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.syntax.nodes import literal
from trainlint.model.values.submodules import UnregisteredAttribute
from trainlint.rule import Violation
from trainlint.slicing import SELF_CONTAINER

_WRAPPER = {"list": "ModuleList", "tuple": "ModuleList", "set": "ModuleList", "dict": "ModuleDict"}


class SubmodulesNotRegistered(Rule):
    """Layers in a Python list/dict, or a `requires_grad` tensor, inside an `nn.Module`.

    ## What it does
    Flags, in a class known to be a torch `nn.Module`, an assignment `self.x = [...]` (or a
    tuple, set, dict or comprehension, also an empty list filled later with
    `self.x.append(...)`, or a local list assigned to `self.x`) holding modules it builds
    (`nn.Linear(...)`, instances of `nn.Module` subclasses of the file or the project), and
    `self.x = torch.<factory>(..., requires_grad=True)`, when nothing registers them later.

    A list of `nn.Parameter`s is flagged too (the fix is `nn.ParameterList`).

    Stays silent on flax/mlx `nn` (not torch), on an attribute re-bound to
    `nn.ModuleList`/`nn.ModuleDict`/`nn.Sequential`/`nn.Parameter` anywhere in the class, on
    elements registered through another attribute (`self.body = nn.Sequential(*self.blocks)`),
    on a lookup table whose chosen element is registered as another attribute
    (`self.backbone = self.resnets[name]`, also through a method that returns it),
    on classes that register by hand (`add_module`, `setattr(self, ...)`, or
    `register_parameter`/`register_buffer` of that attribute), on lists of configs, classes
    or other attributes (`[self.conv1, self.conv2]` are registered already), on passed-in
    objects kept out on purpose (`self.teacher = [teacher]`), on lists of parameter-free
    layers only (`[nn.ReLU(), nn.Tanh()]`), and on a tensor an optimizer is given explicitly.

    ## Why is this bad?
    `nn.Module` registers only modules and `nn.Parameter`s assigned directly to attributes.
    Layers inside a Python list are invisible to `model.parameters()` (the optimizer never
    updates them), to `model.to(device)`/`.cuda()` (they stay on the CPU), to
    `model.eval()` (their Dropout/BatchNorm stay in training mode) and to `state_dict()`
    (checkpoints silently lose them). A plain tensor with `requires_grad=True` has the same
    fate. Training runs, but part of the network stays at its random initialization.

    ## Example
    ```python
    class MLP(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
            self.scale = torch.ones(1, requires_grad=True)
    ```

    ## Use instead
    ```python
    class MLP(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
            self.scale = nn.Parameter(torch.ones(1))
    ```

    The fix (unsafe: it changes what the optimizer trains and the checkpoint's keys) wraps
    the value in `nn.ModuleList`, `nn.ModuleDict` or `nn.Parameter`.
    """

    code = "TL501"
    name = "submodules-not-registered"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("self.",)
    # an attribute assigned (``self.x = [...]``, ``self.w: T = ...``), or a requires_grad tensor
    block_triggers = (SELF_CONTAINER, "requires_grad")
    summary = "Modules in a Python list/dict (or a `requires_grad` tensor) are not registered."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in model.unregistered_attributes:
            yield Violation(found.binding.statement, _message(model, found), _fix(model, found))


def _message(model: TrainingModel, found: UnregisteredAttribute) -> str:
    example = model.text_of(found.example)
    if len(example) > 50 or "\n" in example:
        example = example.split("(", 1)[0] + "(...)"
    where = f"`self.{found.attribute}` in `{found.owner.name}`"
    if found.container == "tensor":
        return (
            f"{where} is a plain tensor with `requires_grad=True` (`{example}`), not an "
            "`nn.Parameter`: `parameters()`, `.to()` and `state_dict()` never see it"
        )
    if found.parameters:
        return (
            f"{where} is a Python {found.container} of parameters (`{example}`): `nn.Module` "
            "does not register them, so `parameters()`, `.to()` and `state_dict()` miss them"
        )
    return (
        f"{where} is a Python {found.container} of modules (`{example}`): `nn.Module` does not "
        "register them, so `parameters()`, `.to()`, `.eval()` and `state_dict()` miss them"
    )


def _fix(model: TrainingModel, found: UnregisteredAttribute) -> Fix:
    wrapper = "Parameter" if found.container == "tensor" else _WRAPPER[found.container]
    if found.parameters:
        wrapper = wrapper.replace("Module", "Parameter")
    prefix = _torch_nn(model)
    advice = f"wrap it in `nn.{wrapper}`"
    statement = found.binding.statement
    value = statement.value if isinstance(statement, (cst.Assign, cst.AnnAssign)) else None
    if prefix is None or value is None or not _editable(found, value):
        return Fix(advice)
    text = model.text_of(value)
    if isinstance(value, (cst.Tuple, cst.Set)):  # ``ModuleList`` takes a list
        text = "[" + ", ".join(model.text_of(e.value) for e in value.elements) + "]"
    replacement = f"{prefix}.{wrapper}({text})"
    edit = Edit(value, replacement)
    if isinstance(value, cst.Tuple) and isinstance(statement, cst.Assign):
        # a tuple's parentheses lie outside its node: rewrite the whole assignment
        targets = "".join(f"{model.text_of(t.target)} = " for t in statement.targets)
        edit = Edit(statement, targets + replacement)
    return Fix(advice, replacement, (edit,), Applicability.UNSAFE)


def _editable(found: UnregisteredAttribute, value: cst.BaseExpression) -> bool:
    if isinstance(value, cst.Dict):  # ``ModuleDict`` keys must be strings
        keys = [e.key for e in value.elements if isinstance(e, cst.DictElement)]
        return all(isinstance(literal(k, None), str) for k in keys) and len(keys) == len(
            value.elements
        )
    if isinstance(value, cst.DictComp):
        return False
    return not (isinstance(value, (cst.Tuple, cst.Set)) and not value.elements)


def _torch_nn(model: TrainingModel) -> str | None:
    """How the file spells ``torch.nn`` (``nn``, ``torch.nn``), if it can."""
    names = model.imports.local_names()
    for local, target in names.items():
        if target == "torch.nn":
            return local
    for local, target in names.items():
        if target == "torch":
            return f"{local}.nn"
    return None
