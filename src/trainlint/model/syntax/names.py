"""Local names -> qualified names, from a file's imports (a cheap stand-in for scope analysis)."""

from __future__ import annotations

import libcst as cst

from trainlint.model.syntax.nodes import dotted

# Modules whose public names we reason about; ``keras`` standalone is folded into tf.keras.
_CANONICAL_PREFIXES = (
    ("tensorflow.python.keras", "tensorflow.keras"),
    ("tf_keras", "tensorflow.keras"),
    ("keras", "tensorflow.keras"),
    # TF 1 code run on TF 2 (``import tensorflow.compat.v1 as tf``): the same API
    ("tensorflow.compat.v1", "tensorflow"),
    ("tensorflow.compat.v2", "tensorflow"),
    ("pytorch_lightning", "lightning.pytorch"),
    # old names of ``transformers``: same optimizers and schedulers, same ``from_pretrained``
    ("pytorch_transformers", "transformers"),
    ("pytorch_pretrained_bert", "transformers"),
    ("lightning.pytorch", "lightning.pytorch"),
    ("torch.cuda.amp", "torch.amp"),
    ("torch.cpu.amp", "torch.amp"),
)


#: Packages that projects vendor (copy into their own tree): ``third_party.apex.amp`` is apex's
#: ``amp``, ``bert.pytorch_pretrained_bert.optimization`` the old transformers optimizers.
_VENDORED = ("apex", "pytorch_pretrained_bert", "pytorch_transformers")


def _unvendored(qualified: str) -> str:
    if ".apex" not in qualified and ".pytorch_" not in qualified:
        return qualified  # the common case, without splitting
    parts = qualified.split(".")
    for index in range(1, len(parts)):
        if parts[index] in _VENDORED:
            return ".".join(parts[index:])
    return qualified


#: canonical(name) by name: asked for every call of every file, about the same few names.
_CANONICAL: dict[str, str] = {}


def canonical(qualified: str) -> str:
    """One spelling per API: ``keras.layers.Dense`` and ``tf.keras.layers.Dense`` agree."""
    found = _CANONICAL.get(qualified)
    if found is None:
        found = _CANONICAL[qualified] = _canonical(qualified)
    return found


def _canonical(qualified: str) -> str:
    qualified = _unvendored(qualified)
    for prefix, replacement in _CANONICAL_PREFIXES:
        if qualified == prefix or qualified.startswith(prefix + "."):
            return replacement + qualified[len(prefix) :]
    return qualified


def _module_name(node: cst.BaseExpression | None) -> str:
    return dotted(node) or ""


class ImportTable:
    """Maps the first component of a dotted name to the fully qualified name it stands for."""

    def __init__(self) -> None:
        self._aliases: dict[str, str] = {}
        #: Names bound by relative imports (the project's own code): local -> ``.utils.Meter``,
        #: one leading dot per level. Kept apart: they never qualify as library names.
        self._relative: dict[str, str] = {}
        #: ``from utils import *``: names the file uses may come from there (``torch`` among them).
        self._star = False
        #: qualify_dotted's answers, forgotten whenever an import is added.
        self._qualified: dict[str, str | None] = {}

    def add_import(self, node: cst.Import) -> None:
        self._qualified.clear()
        for alias in node.names:
            full = _module_name(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self._aliases[alias.asname.name.value] = full
            else:
                top = full.split(".", 1)[0]
                self._aliases.setdefault(top, top)

    def add_import_from(self, node: cst.ImportFrom) -> None:
        self._qualified.clear()
        if isinstance(node.names, cst.ImportStar):
            self._star = True
            return
        module = _module_name(node.module)
        if node.relative:  # the project's own code: resolved by the project index only
            dots = "." * len(node.relative)
            for alias in node.names:
                name = _module_name(alias.name)
                local = name
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                self._relative[local] = f"{dots}{module}.{name}" if module else f"{dots}{name}"
            return
        for alias in node.names:
            name = _module_name(alias.name)
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self._aliases[local] = f"{module}.{name}"

    def qualify_dotted(self, name: str | None) -> str | None:
        """``nn.Linear`` -> ``torch.nn.Linear``; ``None`` when the root is not an import."""
        if not name:
            return None
        known = self._qualified
        if name in known:
            return known[name]
        found = known[name] = self._qualify(name)
        return found

    def _qualify(self, name: str) -> str | None:
        root, _, rest = name.partition(".")
        target = self._aliases.get(root)
        if target is None:
            if root != "torch" or not self._torch_unbound_but_loaded():
                return None
            target = root
        return canonical(f"{target}.{rest}" if rest else target)

    def _torch_unbound_but_loaded(self) -> bool:
        """``torch.no_grad()`` in a file that binds no ``torch`` itself but star-imports a
        module (which supplies it) and imports torch's submodules (``import torch.nn as nn``):
        the code would not run unless ``torch`` is torch."""
        return self._star and any(
            t == "torch" or t.startswith("torch.") for t in self._aliases.values()
        )

    def project_target(self, name: str | None) -> str | None:
        """Where a relatively imported name comes from: ``Meter.update`` -> ``.utils.Meter.update``
        (``None`` when the root is not relatively imported; see :meth:`qualify_dotted`)."""
        if not name or not self._relative:
            return None
        root, _, rest = name.partition(".")
        target = self._relative.get(root)
        if target is None:
            return None
        return f"{target}.{rest}" if rest else target

    def qualify(self, node: cst.CSTNode | None) -> str | None:
        return self.qualify_dotted(dotted(node))

    def imports(self, prefix: str) -> bool:
        """Whether anything under ``prefix`` (e.g. ``torch``) is imported in this file."""
        prefix = canonical(prefix)
        return any(
            canonical(target) == prefix or canonical(target).startswith(prefix + ".")
            for target in self._aliases.values()
        )

    def local_names(self) -> dict[str, str]:
        return dict(self._aliases)


def is_under(qualified: str | None, *prefixes: str) -> bool:
    if not qualified:
        return False
    return any(qualified == p or qualified.startswith(p + ".") for p in prefixes)
