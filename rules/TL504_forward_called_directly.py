from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.syntax.nodes import dotted
from trainlint.rule import Violation


class ForwardCalledDirectly(Rule):
    """`model.forward(x)` called directly instead of `model(x)`.

    ## What it does
    Flags calls of `.forward(...)` on any receiver other than `self` or `super()`.

    ## Why is this bad?
    `nn.Module.__call__` runs the forward pre-hooks and hooks around `forward`: DDP's
    gradient synchronisation, FSDP's parameter gathering, `torch.compile` wrappers,
    quantization observers, `register_forward_hook` probes. Calling `forward` skips them,
    which silently breaks distributed training and instrumentation.

    ## Example
    ```python
    logits = model.forward(images)
    ```

    ## Use instead
    ```python
    logits = model(images)
    ```
    """

    code = "TL504"
    name = "forward-called-directly"
    severity = Severity.INFO
    frameworks = ("torch",)
    triggers = (".forward(",)
    summary = "`module.forward(x)` skips the module's hooks; call `module(x)`."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        for site in model.calls:
            func = site.node.func
            if not (isinstance(func, cst.Attribute) and func.attr.value == "forward"):
                continue
            receiver = func.value
            if isinstance(receiver, cst.Name) and receiver.value in ("self", "cls"):
                continue
            if isinstance(receiver, cst.Call) and getattr(receiver.func, "value", None) == "super":
                continue
            if not _may_be_module_instance(model, receiver, site.node):
                continue
            if not site.node.args or _foreign_object(model, receiver, site.scope):
                continue  # OpenCV's ``net.forward()``, an ONNX session: not a torch module
            text = model.module.code_for_node(receiver)
            arguments = ", ".join(
                model.module.code_for_node(a).rstrip(", ") for a in site.node.args
            )
            yield Violation(
                site.node,
                f"`{text}.forward(...)` bypasses the module's hooks (DDP, FSDP, compile, hooks)",
                Fix("call the module itself", f"{text}({arguments})"),
            )


#: Names of RPC handles: ``RemoteModule.forward`` and ``rref.rpc_async().forward`` are remote
#: calls, not a bypass of a local module's ``__call__``.
_REMOTE = re.compile(r"remote|rref", re.IGNORECASE)


def _may_be_module_instance(model: TrainingModel, receiver, call: cst.Call) -> bool:
    """Whether ``receiver.forward(...)`` can be a module instance's forward called by hand.

    Not when the receiver is the result of a call that builds no ``torch.nn`` module (a
    compiled extension, an RPC proxy such as ``rref.remote()``), an RPC handle, a class
    (``Function.forward(ctx, ...)``), or when the first argument is ``self``: an explicit
    ``Base.forward(self, x)`` or a helper object whose ``forward`` takes the calling module.
    """
    first = call.args[0] if call.args else None
    if first is not None and first.keyword is None and dotted(first.value) == "self":
        return False
    if isinstance(receiver, cst.Call):
        return (model.imports.qualify(receiver.func) or "").startswith("torch.nn.")
    name = dotted(receiver)
    if name is None:
        return True
    last = name.rsplit(".", 1)[-1]
    if _REMOTE.search(last):
        return False
    return not (last[:1].isupper() and (last in model.classes or model.imports.qualify(receiver)))


def _foreign_object(model: TrainingModel, receiver, scope) -> bool:
    """``receiver`` is bound only to calls into a non-torch library (``cv2.dnn.readNet``)."""
    name = dotted(receiver)
    if name is None:
        return False
    values = [b.value for b in model.lookup(name, scope) if not b.from_iteration]
    if not values or not all(isinstance(v, cst.Call) for v in values):
        return False
    roots = {(model.imports.qualify(v.func) or "").split(".", 1)[0] for v in values}
    return roots <= _FOREIGN_LIBRARIES


#: Libraries whose objects have a ``forward`` of their own (OpenCV DNN nets, ONNX / OpenVINO /
#: TensorRT runtimes, TF and JAX models). peft, transformers, timm, torchvision... build torch
#: modules, so they are not listed.
_FOREIGN_LIBRARIES = {
    "cv2", "onnxruntime", "openvino", "tensorrt", "tensorflow", "keras", "jax", "flax",
    "paddle", "mxnet", "sklearn", "coremltools", "tflite_runtime", "caffe",
}  # fmt: skip
