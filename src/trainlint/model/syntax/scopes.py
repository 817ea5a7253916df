"""One visitor pass over a module: scopes, classes, bindings, call sites and loops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from trainlint.model.syntax.names import ImportTable
from trainlint.model.syntax.nodes import child_nodes, dotted, keyword, positional
from trainlint.model.syntax.targets import nested_names, star_positions, target_names


@dataclass(eq=False)
class Binding:
    """``target = value`` (also ``target += value``, for-targets, with-as, unpacking)."""

    target: str
    value: cst.BaseExpression | None
    statement: cst.CSTNode
    order: int
    #: Index into a tuple on the right-hand side, for ``a, b = f()``.
    unpack_index: int | None = None
    #: ``+=`` and friends: the operator's class name (``AddAssign``...).
    augmented: str | None = None
    #: ``for x in value`` binds x to an element of value.
    from_iteration: bool = False
    #: The function (or module) the binding is written in.
    scope: Scope | None = None
    #: A name in a nested target (``(train, test), info = tfds.load(...)``): the index path
    #: into the right-hand side. ``value`` stays None for it (most analyses cannot tell what
    #: part of a value it holds); ``unpacked_from`` is that right-hand side.
    nested_path: tuple[int, ...] = ()
    unpacked_from: cst.BaseExpression | None = None
    #: Unpacking with a star (``a, *rest, b = f()``): ``rest`` is ``starred`` (a list of the
    #: middle slots, not slot ``unpack_index``); ``b`` is slot ``from_end`` counted from the
    #: end (-1), its ``unpack_index`` being only its position in the target; for ``rest``
    #: itself, minus the number of names after it (0 when it is last).
    starred: bool = False
    from_end: int | None = None


@dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    bases: list[str]  # qualified where the base is imported, dotted text otherwise
    methods: dict[str, Scope] = field(default_factory=dict)
    attributes: dict[str, list[Binding]] = field(default_factory=dict)  # self.x = ...
    class_assignments: dict[str, cst.BaseExpression] = field(default_factory=dict)


@dataclass(eq=False)
class Scope:
    """A function (or the module): its parameters, bindings and returns."""

    node: cst.Module | cst.FunctionDef
    name: str
    parent: Scope | None
    cls: ClassInfo | None = None
    params: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    decorators: list[cst.BaseExpression] = field(default_factory=list)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    returns: list[cst.BaseExpression] = field(default_factory=list)
    return_orders: list[int] = field(default_factory=list)  # visiting order of each return
    functions: dict[str, Scope] = field(default_factory=dict)  # nested defs by name

    @property
    def is_module(self) -> bool:
        return isinstance(self.node, cst.Module)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def visible_function(self, name: str) -> Scope | None:
        """The ``def name`` a bare call of ``name`` here runs: this scope's nested defs first,
        then each enclosing scope's, as Python resolves it."""
        current: Scope | None = self
        while current is not None:
            found = current.functions.get(name)
            if found is not None:
                return found
            current = current.parent
        return None


@dataclass(eq=False)
class LoopInfo:
    node: cst.For | cst.While
    scope: Scope
    parent: LoopInfo | None
    order: int
    children: list[LoopInfo] = field(default_factory=list)
    #: A loop of another module's function, as its summary's stub shows it (not in this file).
    external: bool = False

    @property
    def depth(self) -> int:
        depth, loop = 0, self.parent
        while loop is not None:
            depth, loop = depth + 1, loop.parent
        return depth

    @property
    def iter_expr(self) -> cst.BaseExpression | None:
        return self.node.iter if isinstance(self.node, cst.For) else None

    @property
    def body(self) -> cst.BaseSuite:
        return self.node.body


@dataclass(frozen=True, eq=False)
class CallSite:
    node: cst.Call
    scope: Scope
    dotted: str | None
    qualified: str | None
    order: int
    #: Order of the statement holding the call: bindings made by that statement come later.
    statement_order: int = 0


def argument_for(call: cst.Call, callee: Scope, param: str) -> cst.BaseExpression | None:
    """The argument ``call`` passes for ``callee``'s parameter ``param``, if any."""
    params = list(callee.params)
    if callee.cls is not None and params and params[0] in ("self", "cls"):
        params = params[1:]
    found = keyword(call, param)
    if found is not None:
        return found
    if param in params:
        return positional(call, params.index(param))
    return None


def _handlers(node_type: type) -> tuple[Callable[..., object] | None, Callable[..., object] | None]:
    """``(visit_<Type>, leave_<Type>)`` of :class:`ScopeBuilder` for ``node_type`` (None when
    it has none): one lookup per node of the walk."""
    found = _HANDLERS.get(node_type)
    if found is None:
        name = node_type.__name__
        found = _HANDLERS[node_type] = (
            getattr(ScopeBuilder, "visit_" + name, None),
            getattr(ScopeBuilder, "leave_" + name, None),
        )
    return found


_HANDLERS: dict[type, tuple[Callable[..., object] | None, Callable[..., object] | None]] = {}


class ScopeBuilder:
    """Collects the facts every rule shares, in a single walk with no metadata providers.

    The walk reads node fields directly (see ``syntax.child_nodes``) and dispatches to
    ``visit_<Type>`` / ``leave_<Type>`` methods; a ``visit_`` returning False skips the subtree.
    """

    def __init__(self, module: cst.Module) -> None:
        self.imports = ImportTable()
        self.module_scope = Scope(node=module, name="<module>", parent=None)
        self.scopes: list[Scope] = [self.module_scope]
        self.classes: dict[str, ClassInfo] = {}
        self.loops: list[LoopInfo] = []
        self.calls: list[CallSite] = []
        self.expression_statements: list[tuple[cst.Expr, Scope]] = []
        self.order_of: dict[int, int] = {}  # id(statement) -> visiting order
        #: id(node) -> its parent, for every node below the root (recorded by the walk, which
        #: visits every node anyway: a second walk to map parents cost as much as this one).
        self.parents: dict[int, cst.CSTNode] = {}
        self._scope_stack: list[Scope] = [self.module_scope]
        self._containers: list[ClassInfo | Scope] = []
        self._loop_stack: list[LoopInfo | None] = [None]
        self._order = 0
        self._statement_order = 0

    # ----------------------------------------------------------------- bookkeeping
    @property
    def scope(self) -> Scope:
        return self._scope_stack[-1]

    def walk(self, node: cst.CSTNode) -> None:
        self._order += 1
        visit, leave = _HANDLERS.get(type(node)) or _handlers(type(node))
        if visit is not None and visit(self, node) is False:
            self._record_parents(node)  # not walked (imports), but their parents are asked
            return
        parents = self.parents
        for child in child_nodes(node):
            parents[id(child)] = node
            self.walk(child)
        if leave is not None:
            leave(self, node)

    def _record_parents(self, root: cst.CSTNode) -> None:
        parents, stack = self.parents, [root]
        while stack:
            current = stack.pop()
            for child in child_nodes(current):
                parents[id(child)] = current
                stack.append(child)

    def _bind(self, binding: Binding) -> None:
        scope = self.scope
        binding.scope = scope
        scope.bindings.setdefault(binding.target, []).append(binding)
        if binding.target.startswith("self.") and scope.cls is not None:
            attribute = binding.target[len("self.") :]
            scope.cls.attributes.setdefault(attribute, []).append(binding)

    # ----------------------------------------------------------------- imports
    def visit_Import(self, node: cst.Import) -> bool:
        self.imports.add_import(node)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        self.imports.add_import_from(node)
        return False

    # ----------------------------------------------------------------- definitions
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        bases = [self.imports.qualify(b.value) or dotted(b.value) or "" for b in node.bases]
        info = ClassInfo(node=node, name=node.name.value, bases=bases)
        self.classes.setdefault(info.name, info)
        self._containers.append(info)
        for statement in node.body.body:
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, cst.Assign) and len(small.targets) == 1:
                        name = dotted(small.targets[0].target)
                        if name:
                            info.class_assignments[name] = small.value

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._containers.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        parent = self.scope
        container = self._containers[-1] if self._containers else None
        direct_class = container if isinstance(container, ClassInfo) else None
        cls = direct_class or parent.cls  # closures inside methods still see ``self``
        if direct_class is not None:
            name = f"{direct_class.name}.{node.name.value}"
        elif parent.is_module:
            name = node.name.value
        else:
            name = f"{parent.name}.{node.name.value}"
        scope = Scope(
            node=node,
            name=name,
            parent=parent,
            cls=cls,
            decorators=[d.decorator for d in node.decorators],
        )
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            scope.params.append(param.name.value)
            if param.annotation is not None:
                annotation = param.annotation.annotation
                scope.annotations[param.name.value] = (
                    self.imports.qualify(annotation) or dotted(annotation) or ""
                )
        if direct_class is not None:
            direct_class.methods.setdefault(node.name.value, scope)
        else:
            parent.functions.setdefault(node.name.value, scope)
        self.scopes.append(scope)
        self._scope_stack.append(scope)
        self._containers.append(scope)
        self._loop_stack.append(None)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._scope_stack.pop()
        self._containers.pop()
        self._loop_stack.pop()

    # ----------------------------------------------------------------- statements
    def _remember(self, node: cst.CSTNode) -> None:
        self.order_of[id(node)] = self._order
        self._statement_order = self._order

    def visit_Raise(self, node: cst.Raise) -> None:
        self._remember(node)

    def visit_Assert(self, node: cst.Assert) -> None:
        self._remember(node)

    def visit_Del(self, node: cst.Del) -> None:
        self._remember(node)

    def visit_Assign(self, node: cst.Assign) -> None:
        self._remember(node)
        for target in node.targets:
            stars = star_positions(target.target)
            for name, index in target_names(target.target):
                binding = Binding(name, node.value, node, self._order, unpack_index=index)
                if stars and index is not None:
                    binding.starred = index == stars[0]
                    if index >= stars[0]:  # the star: minus how many names follow it
                        binding.from_end = index - stars[1] + (1 if index == stars[0] else 0)
                self._bind(binding)
            for name, path in nested_names(target.target):
                nested = Binding(name, None, node, self._order, nested_path=path)
                nested.unpacked_from = node.value
                self._bind(nested)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._remember(node)
        name = dotted(node.target)
        if name and node.value is not None:
            self._bind(Binding(name, node.value, node, self._order))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._remember(node)
        name = dotted(node.target)
        if name:
            operator = type(node.operator).__name__
            self._bind(Binding(name, node.value, node, self._order, augmented=operator))

    def visit_Return(self, node: cst.Return) -> None:
        self._remember(node)
        if node.value is not None:
            self.scope.returns.append(node.value)
            self.scope.return_orders.append(self._order)

    def visit_Expr(self, node: cst.Expr) -> None:
        self._remember(node)
        self.expression_statements.append((node, self.scope))

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            for name, index in target_names(node.asname.name):
                self._bind(Binding(name, node.item, node, self._order, unpack_index=index))

    def _enter_loop(self, node: cst.For | cst.While) -> None:
        self._remember(node)
        parent = self._loop_stack[-1]
        loop = LoopInfo(node=node, scope=self.scope, parent=parent, order=self._order)
        if parent is not None:
            parent.children.append(loop)
        self.loops.append(loop)
        self._loop_stack.append(loop)

    def visit_For(self, node: cst.For) -> None:
        for name, index in target_names(node.target):
            self._bind(
                Binding(name, node.iter, node, self._order, unpack_index=index, from_iteration=True)
            )
        self._enter_loop(node)

    def leave_For(self, original_node: cst.For) -> None:
        self._loop_stack.pop()

    def visit_While(self, node: cst.While) -> None:
        self._enter_loop(node)

    def leave_While(self, original_node: cst.While) -> None:
        self._loop_stack.pop()

    def visit_If(self, node: cst.If) -> None:
        self._remember(node)

    def visit_With(self, node: cst.With) -> None:
        self._remember(node)

    def visit_Call(self, node: cst.Call) -> None:
        name = dotted(node.func)
        qualified = self.imports.qualify_dotted(name) if name else None
        self.calls.append(
            CallSite(node, self.scope, name, qualified, self._order, self._statement_order)
        )


def names_function(name: str, scope: Scope) -> bool:
    """Whether ``name`` seen from ``scope`` is a function: a ``def`` of an enclosing scope, or a
    parameter annotated ``Callable[...]`` or defaulting to a lambda (``model_fn=lambda m, x:
    m(x)``). Such a name is never a model, an optimizer..., whatever it is called."""
    current: Scope | None = scope
    while current is not None:
        if name in current.params:
            return _callable_parameter(current, name)
        if name in current.functions:
            return name not in current.bindings
        if name in current.bindings:
            return False
        current = current.parent
    return False


def _callable_parameter(scope: Scope, name: str) -> bool:
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return False
    params = node.params
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.name.value != name:
            continue
        if isinstance(param.default, cst.Lambda):
            return True
        annotation = param.annotation.annotation if param.annotation is not None else None
        if isinstance(annotation, cst.Subscript):
            annotation = annotation.value
        return (dotted(annotation) or "").rsplit(".", 1)[-1] == "Callable"
    return False
