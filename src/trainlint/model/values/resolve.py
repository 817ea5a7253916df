"""What a binding holds, resolved from where it was made.

In order of trust: the constructor a value was built with (resolved through imports), a
same-file class (by its kind, see :mod:`.types`), a wrapping call (slot by slot, see
:mod:`.wrappers`), a same-file factory function's returns, an ``isinstance`` check around the
use, an annotation; and only for names bound to nothing visible (parameters, globals of other
files) the name itself. A name bound to an instance of a plain same-file class is that object,
whatever it is called: ``model = MLP()`` with ``class MLP:`` is not a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.summaries.queries import class_summary
from trainlint.model.syntax.nodes import dotted, literal
from trainlint.model.syntax.scopes import names_function
from trainlint.model.values.factories import chosen_functions
from trainlint.model.values.isinstance_checks import Narrowing
from trainlint.model.values.roles import (
    Role,
    Value,
    classify_constructor,
    role_from_annotation,
    role_from_name,
)
from trainlint.model.values.types import ClassKind
from trainlint.model.values.wrappers import is_slot_by_slot, slot_count, wrapped_slot

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, Scope

#: Roles of instances of same-file classes, by the class's kind.
_KIND_ROLES = {
    ClassKind.TORCH_MODULE: Role.MODEL,
    ClassKind.LIGHTNING_MODULE: Role.MODEL,
    ClassKind.KERAS_MODEL: Role.MODEL,
    ClassKind.OPTIMIZER: Role.OPTIMIZER,
    ClassKind.SCHEDULER: Role.SCHEDULER,
    ClassKind.DATASET: Role.DATASET,
    ClassKind.PLAIN: Role.OBJECT,
    ClassKind.DATACLASS: Role.OBJECT,
}


#: Roles of objects whose attributes are never models (``accelerator.save_model``,
#: ``optimizer.param_groups``): their names must not be read as roles.
_HOLDS_NO_MODELS = frozenset(
    {
        Role.ACCELERATOR,
        Role.OPTIMIZER,
        Role.SCHEDULER,
        Role.SCALER,
        Role.LOADER,
        Role.DATASET,
        Role.TAPE,
        Role.CRITERION,
    }
)

#: List methods that change what a list display bound to a name holds.
_GROWING = frozenset({"append", "extend", "insert", "pop", "remove", "clear"})


class ValueResolver:
    """``value_of(expr, scope)`` for one file, cached per (node, scope)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self.narrowing = Narrowing(model)
        self._values: dict[tuple[int, int], Value | None] = {}
        #: (name, id(scope)) -> the value its bindings give: a name bound in thousands of
        #: loops is resolved once, not once per use (linear, not quadratic).
        self._name_values: dict[tuple[str, int], Value | None] = {}
        self._resolving: set[tuple[int, int]] = set()
        self._first_calls: dict[int, int | None] = {}  # function -> its first module call
        # Cached by id(): keep each looked-up node alive so a freed temporary (a node made by
        # ``cst.parse_expression``) cannot hand its id, and its cached value, to another node.
        self._pinned: list[cst.CSTNode] = []

    def value_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Value | None:
        if expr is None:
            return None
        key = (id(expr), id(scope))
        if key in self._values:
            return self._values[key]
        if key in self._resolving:
            return None
        self._resolving.add(key)
        try:
            value = self._resolve(expr, scope)
        finally:
            self._resolving.discard(key)
        self._values[key] = value
        self._pinned.append(expr)
        return value

    def _resolve(self, expr: cst.BaseExpression, scope: Scope) -> Value | None:
        if isinstance(expr, cst.Call):
            return self.value_of_call(expr, scope, None)
        if isinstance(expr, cst.Subscript):
            part = expr.slice[0].slice if len(expr.slice) == 1 else None
            index = literal(part.value, None) if isinstance(part, cst.Index) else None
            if isinstance(index, int) and not isinstance(index, bool):
                return self._starred_slot(expr.value, index, scope)  # ``rest[0]``
            return None
        name = dotted(expr)
        if name is None:
            return None
        checked = self.narrowing.role_at(expr, name)
        if checked is not None:
            return checked  # ``if isinstance(o, torch.optim.Optimizer): o.step()``
        value = self._value_of_name(name, scope)
        if value is not None:
            return value
        if name in scope.annotations:
            role = role_from_annotation(scope.annotations[name])
            if role is not None:
                return Value(role)
        if self.model.imports.qualify_dotted(name):
            return None  # a library attribute (``torch.optim``), not a variable
        if "." not in name and self.model.imports.project_target(name):
            # ``from .modeling_utils import unwrap_model``: a project function or class, as an
            # absolute import's name is; its role comes from its summary, not its name
            return None
        if "." not in name and names_function(name, scope):
            return None  # ``_assert_model(...)``, ``model_fn: Callable``: a function
        if isinstance(expr, cst.Attribute) and self._owner_holds_no_models(expr.value, scope):
            return None  # ``accelerator.save_model``: a method of the accelerator, no model
        role = role_from_name(name)
        return Value(role) if role is not None else None

    def _owner_holds_no_models(self, owner: cst.BaseExpression, scope: Scope) -> bool:
        """Whether ``owner`` is known to be an object whose attributes are its own methods and
        settings (an accelerator, optimizer, scheduler...), so that an attribute's name says
        nothing of its role. Models, engines and plain objects can hold models."""
        value = self.value_of(owner, scope)
        return value is not None and value.role in _HOLDS_NO_MODELS

    def _value_of_name(self, name: str, scope: Scope) -> Value | None:
        """The value of the latest binding of ``name`` that gives one (the same for every use
        of the name in ``scope``)."""
        key = (name, id(scope))
        if key in self._name_values:
            return self._name_values[key]
        value = None
        for binding in self._bindings_when_called(name, scope):
            if binding.augmented or binding.from_iteration:
                continue
            if binding.value is None:
                value = self._value_of_nested(binding, binding.scope or scope)
            else:
                value = self._value_of_binding(binding, binding.scope or scope)
            if value is not None:
                break
        if len(self._resolving) == 1:  # not inside a cycle's partial answer: safe to keep
            self._name_values[key] = value
        return value

    def _bindings_when_called(self, name: str, scope: Scope) -> list[Binding]:
        """The bindings of ``name`` as ``scope`` sees them, latest first. A module-level
        function reading a global the module rebinds later (a notebook reusing ``loss_fn``)
        sees the bindings made before the module first calls it."""
        bindings = self.model.lookup(name, scope)
        module = self.model.module_scope
        if scope.parent is not module or len(bindings) < 2 or bindings[0].scope is not module:
            return bindings
        first = self._first_module_call(scope)
        if first is None:
            return bindings
        return [b for b in bindings if b.order < first] or bindings

    def _first_module_call(self, scope: Scope) -> int | None:
        key = id(scope.node)
        if key not in self._first_calls:
            module = self.model.module_scope
            self._first_calls[key] = next(
                (
                    site.order
                    for site in self.model.calls_in(module)
                    if isinstance(site.node.func, cst.Name)
                    and site.node.func.value == scope.short_name
                    and module.functions.get(scope.short_name) is scope
                ),
                None,
            )
        return self._first_calls[key]

    def _value_of_nested(self, binding: Binding, scope: Scope) -> Value | None:
        """``model, [opt1, opt2] = amp.initialize(model, [opt1, opt2])``: ``opt1`` is element 0
        of the list the wrapper's slot 1 wraps."""
        call = binding.unpacked_from
        if not binding.nested_path or not isinstance(call, cst.Call):
            return None
        first, *rest = binding.nested_path
        slot = wrapped_slot(call, self.model.imports.qualify(call.func), first)
        argument = slot.argument if slot is not None else None
        for index in rest:
            argument = self._literal(argument, scope)
            if argument is None or index >= len(argument.elements):
                return None
            element = argument.elements[index]
            if isinstance(element, cst.StarredElement):
                return None
            argument = element.value
        return self.value_of(argument, scope) if argument is not None else None

    def _literal(
        self, expr: cst.BaseExpression | None, scope: Scope
    ) -> cst.Tuple | cst.List | None:
        """A list or tuple display, or the one a name is bound to once (``objs = [m, o]``)."""
        if isinstance(expr, (cst.Tuple, cst.List)):
            return expr
        name = dotted(expr) if expr is not None else None
        if name is None:
            return None
        bindings = self.model.lookup(name, scope)
        if len(bindings) != 1:
            return None
        only = bindings[0]
        if only.augmented or only.unpack_index is not None or only.from_iteration:
            return None
        for site in self.model.calls_in(only.scope or scope):
            func = site.node.func
            if (
                isinstance(func, cst.Attribute)
                and func.attr.value in _GROWING
                and dotted(func.value) == name
            ):
                return None  # ``objs.append(loader)``: the display is not all it holds
        return only.value if isinstance(only.value, (cst.Tuple, cst.List)) else None

    def _positionals(self, call: cst.Call, scope: Scope) -> list[cst.BaseExpression] | None:
        """The positional arguments of ``call`` with ``*objs`` spread out, when every starred
        argument is a visible list or tuple (``accelerator.prepare(*objs)``)."""
        found: list[cst.BaseExpression] = []
        for arg in call.args:
            if arg.keyword is not None or arg.star == "**":
                continue
            if not arg.star:
                found.append(arg.value)
                continue
            spread = self._literal(arg.value, scope)
            if spread is None or any(isinstance(e, cst.StarredElement) for e in spread.elements):
                return None
            found.extend(e.value for e in spread.elements)
        return found

    def _starred_slot(
        self, expr: cst.BaseExpression | None, index: int, scope: Scope
    ) -> Value | None:
        """Element ``index`` of ``rest`` bound by ``model, *rest = accelerator.prepare(...)``:
        the wrapper's slot after the ones before the star (names after it are not counted)."""
        name = dotted(expr) if expr is not None else None
        if name is None or index < 0:
            return None
        bindings = self.model.lookup(name, scope)
        if len(bindings) != 1 or not bindings[0].starred:
            return None
        star = bindings[0]
        call = star.value
        if not isinstance(call, cst.Call) or star.unpack_index is None:
            return None
        if not is_slot_by_slot(call, self.model.imports.qualify(call.func)):
            return None
        slot = star.unpack_index + index
        count = slot_count(call, self._positionals(call, star.scope or scope))
        if count is None or slot >= count + (star.from_end or 0):
            return None  # past the star's slots (those of the names after it)
        return self.value_of_call(call, star.scope or scope, slot)

    def _value_of_binding(self, binding: Binding, scope: Scope) -> Value | None:
        value = binding.value
        if binding.starred:
            return None  # ``*rest``: a list of slots, not one of them
        if binding.from_end is not None:
            # ``*front, sched = accelerator.prepare(model, opt, loader, sched)``
            if not isinstance(value, cst.Call):
                return None
            return self.value_of_call(value, scope, binding.from_end)
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                elements = value.elements
                if binding.unpack_index < len(elements):
                    return self.value_of(elements[binding.unpack_index].value, scope)
                return None
            if isinstance(value, cst.Call):
                return self.value_of_call(value, scope, binding.unpack_index)
            return self._starred_slot(value, binding.unpack_index, scope)  # ``o, d = rest``
        if isinstance(value, cst.Call):
            return self.value_of_call(value, scope, None)
        if isinstance(value, (cst.Name, cst.Attribute)) and dotted(value) != binding.target:
            return self.value_of(value, scope)
        if isinstance(value, cst.Subscript):
            return self.value_of(value, scope)  # ``loader = rest[1]``
        return None

    def value_of_call(self, call: cst.Call, scope: Scope, index: int | None) -> Value | None:
        """What ``call`` returns (slot ``index`` of it when it returns a tuple)."""
        model = self.model
        qualified = model.imports.qualify(call.func)
        positionals = None
        if is_slot_by_slot(call, qualified) and (
            any(arg.star == "*" for arg in call.args) or (index is not None and index < 0)
        ):
            positionals = self._positionals(call, scope)
        if index is not None and index < 0:
            # a slot counted from the end (``*front, sched = ...``): only wrappers with one
            # slot per argument tell how many slots there are
            count = slot_count(call, positionals) if is_slot_by_slot(call, qualified) else None
            if count is None or count + index < 0:
                return None
            index += count
        slot = wrapped_slot(call, qualified, index, positionals)
        if slot is not None:
            if slot.made:
                return _made_by_wrapper(slot.made, qualified or "", call)
            wrapped = self.value_of(slot.argument, scope)
            if wrapped is not None or not qualified:
                return wrapped
            # ``FP16_Optimizer(opt)`` around something unresolved: what the wrapper itself is
        if qualified:
            found = classify_constructor(qualified, call)
            if found is not None:
                return found
        name = dotted(call.func)
        info = model.classes.get(name) if name else None
        if info is not None:
            kind = model.class_kind(info)
            role = _KIND_ROLES.get(kind)
            if role is None and model.is_module_class(info):
                role = Role.MODEL  # unknown bases named like a model's (``BaseModel`` elsewhere)
            return Value(role, info.name, call) if role is not None else None
        owner = class_summary(model, name, scope) if model.project is not None else None
        if owner is not None and owner.is_module:  # another project module's nn.Module
            return Value(Role.MODEL, qualified or name or "", call)
        callee = model.callee(call, scope)
        if callee is not None:
            return self._returned(callee, index)
        chosen = chosen_functions(model, call, scope)
        if chosen:  # ``make(...)`` with ``make`` taken from ``[make_train_loader, ...]``
            values = [self._returned(function, index) for function in chosen]
            roles = {v.role if v is not None else None for v in values}
            return values[0] if len(roles) == 1 else None
        return None

    def _returned(self, callee: Scope, index: int | None) -> Value | None:
        """The value a function returns (slot ``index`` of a returned tuple)."""
        for returned in callee.returns:
            if index is not None and isinstance(returned, cst.Tuple):
                if index < len(returned.elements):
                    returned = returned.elements[index].value
                else:
                    continue
            value = self.value_of(returned, callee)
            if value is not None:
                return value
        return None


def _made_by_wrapper(made: str, qualified: str, call: cst.Call) -> Value:
    role = {"engine": Role.ENGINE, "optimizer": Role.OPTIMIZER, "loader": Role.LOADER}[made]
    return Value(role, qualified, call)
