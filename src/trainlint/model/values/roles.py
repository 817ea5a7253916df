"""What a binding holds: optimizer, scheduler, scaler, model, criterion, loader, ...

Roles come from the constructor a value was built with (resolved through imports), from
same-file classes and factory functions, from wrappers (``accelerator.prepare``, DDP,
``torch.compile``, ``.to()``, see :mod:`.wrappers`), and, for parameters and unresolved names,
from names and annotations (``optimizer``, ``opt_g: Optimizer``); :mod:`.resolve` puts them
together.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import keyword, literal, positional


class Role(enum.Enum):
    OPTIMIZER = "optimizer"
    SCHEDULER = "scheduler"
    SCALER = "scaler"
    MODEL = "model"
    CRITERION = "criterion"
    LOADER = "loader"
    DATASET = "dataset"
    ACCELERATOR = "accelerator"
    ENGINE = "engine"  # DeepSpeed engine: backward/step/zero_grad are its own business
    TAPE = "tape"
    #: An instance of a same-file class of no library kind (``class MLP:``): what it does is
    #: what its methods do, never what its name suggests.
    OBJECT = "object"


@dataclass(frozen=True, eq=False)
class Value:
    """A resolved role and the call that made it (``None`` when known only by name)."""

    role: Role
    kind: str = ""  # qualified constructor name, or the same-file class name
    call: cst.Call | None = None
    options: dict[str, cst.BaseExpression] = field(default_factory=dict)

    def option(self, name: str, default: object = None) -> object:
        expr = self.options.get(name)
        return default if expr is None else literal(expr, default)

    @property
    def short_kind(self) -> str:
        return self.kind.rsplit(".", 1)[-1]


EPOCH_SCHEDULERS = {"StepLR", "MultiStepLR", "ExponentialLR", "ReduceLROnPlateau"}

_OPTIMIZER_PACKAGES = (
    "torch.optim",
    "apex.optimizers",
    "bitsandbytes.optim",
    "timm.optim",
    "transformers.optimization",
    "torch_optimizer",
    "lion_pytorch",
    "torch.distributed.optim",
)
#: Optimizers of ``transformers`` and of its old names (``pytorch_transformers``,
#: ``pytorch_pretrained_bert``, both read as ``transformers``): ``BertAdam`` warms up by itself.
_TRANSFORMERS_OPTIMIZERS = {"AdamW", "BertAdam", "OpenAIAdam", "Adafactor"}
_LOSS_PACKAGES = ("torch.nn", "torch.nn.modules.loss")
_MODEL_FACTORIES = (
    "timm.create_model",
    "torchvision.models",
    "torch.hub.load",
)
#: ``from_pretrained`` owners that load no model (``AutoTokenizer``, ``BertConfig``...).
_NOT_MODELS = re.compile(r"Tokenizer|Config|Processor|FeatureExtractor|Pipeline")
_NAME_ROLES: list[tuple[re.Pattern[str], Role]] = [
    (re.compile(r"^(lr_)?sched(uler)?s?(_\w+)?$|_sched(uler)?$"), Role.SCHEDULER),
    (re.compile(r"^(optim(izer)?|opt)s?(_\w+)?$|_(optim(izer)?|opt)$"), Role.OPTIMIZER),
    (re.compile(r"^(grad_)?scaler$|_scaler$"), Role.SCALER),
    (
        re.compile(r"^(criterion|loss_fn|loss_func(tion)?|criterion_\w+|\w+_criterion)$"),
        Role.CRITERION,
    ),
    (re.compile(r"^(\w+_)?(data)?loader$|^dl(_\w+)?$|^\w+_dl$"), Role.LOADER),
    (
        re.compile(r"^(model|net|network|module|(\w+_)?model|model_\w+|(\w+_)?net|net_\w+)$"),
        Role.MODEL,
    ),
    (re.compile(r"^accelerator$"), Role.ACCELERATOR),
    (re.compile(r"^(model_)?engine$"), Role.ENGINE),
]


def role_from_name(name: str) -> Role | None:
    last = name.rsplit(".", 1)[-1]
    for pattern, role in _NAME_ROLES:
        if pattern.search(last):
            return role
    return None


def role_from_annotation(annotation: str) -> Role | None:
    if annotation.startswith("trainlint:"):  # a stub of another module's code (summaries)
        try:
            return Role(annotation[len("trainlint:") :])
        except ValueError:
            return None
    last = annotation.rsplit(".", 1)[-1]
    if last in {"Optimizer", "AdamW", "Adam", "SGD"}:
        return Role.OPTIMIZER
    if last in {"Module", "PreTrainedModel"}:
        return Role.MODEL
    if last in {"DataLoader"}:
        return Role.LOADER
    if last in {"GradScaler"}:
        return Role.SCALER
    if last in {"LRScheduler", "_LRScheduler", "LambdaLR"}:
        return Role.SCHEDULER
    if last in {"Accelerator"}:
        return Role.ACCELERATOR
    return None


def _options(call: cst.Call) -> dict[str, cst.BaseExpression]:
    return {a.keyword.value: a.value for a in call.args if a.keyword is not None}


def classify_constructor(qualified: str, call: cst.Call) -> Value | None:
    """The role of ``call`` when it constructs a known library object."""
    last = qualified.rsplit(".", 1)[-1]
    options = _options(call)
    if is_under(qualified, "torch.optim.lr_scheduler", "transformers.optimization") and (
        "schedule" in last.lower() or last.endswith("LR") or "LR" in last
    ):
        return Value(Role.SCHEDULER, qualified, call, options)
    if is_under(qualified, "transformers") and (
        last.startswith("get_") and "schedule" in last or last.endswith("Schedule")
    ):  # ``get_linear_schedule_with_warmup``; the old ``WarmupLinearSchedule`` classes
        return Value(Role.SCHEDULER, qualified, call, options)
    if is_under(qualified, *_OPTIMIZER_PACKAGES) and last[:1].isupper():
        return Value(Role.OPTIMIZER, qualified, call, options)
    if qualified == "timm.optim.create_optimizer_v2" or (
        is_under(qualified, "transformers") and last in _TRANSFORMERS_OPTIMIZERS
    ):
        return Value(Role.OPTIMIZER, qualified, call, options)
    if last == "GradScaler" and is_under(qualified, "torch"):
        return Value(Role.SCALER, qualified, call, options)
    if last == "DataLoader":
        return Value(Role.LOADER, qualified, call, options)
    if is_under(qualified, "torch.utils.data") and last.endswith("Dataset"):
        return Value(Role.DATASET, qualified, call, options)
    if is_under(qualified, *_LOSS_PACKAGES) and last.endswith("Loss"):
        return Value(Role.CRITERION, qualified, call, options)
    if is_under(qualified, "torch.nn") and last[:1].isupper() and "." not in qualified[9:]:
        return Value(Role.MODEL, qualified, call, options)
    if is_under(qualified, *_MODEL_FACTORIES) or (
        is_under(qualified, "transformers")
        and last == "from_pretrained"
        and not _NOT_MODELS.search(qualified.rsplit(".", 2)[-2])
    ):
        return Value(Role.MODEL, qualified, call, options)
    if qualified in ("accelerate.Accelerator", "lightning.fabric.Fabric", "lightning.Fabric"):
        return Value(Role.ACCELERATOR, qualified, call, options)
    if is_under(qualified, "tensorflow.keras.optimizers") and last[:1].isupper():
        return Value(Role.OPTIMIZER, qualified, call, options)
    if is_under(qualified, "tensorflow.keras.losses") and last[:1].isupper():
        return Value(Role.CRITERION, qualified, call, options)
    if is_under(qualified, "tensorflow.keras.layers", "tensorflow.keras.applications") and (
        last[:1].isupper()
    ):
        return Value(Role.MODEL, qualified, call, options)  # a keras layer, like nn.Linear
    if qualified == "tensorflow.GradientTape":
        return Value(Role.TAPE, qualified, call, options)
    if is_under(
        qualified, "tensorflow.keras.models", "tensorflow.keras.Sequential"
    ) or qualified in (
        "tensorflow.keras.Model",
        "tensorflow.keras.Sequential",
    ):
        return Value(Role.MODEL, qualified, call, options)
    return None


def is_closure_step(call: cst.Call) -> bool:
    return bool(call.args) and (positional(call, 0) is not None or keyword(call, "closure"))
