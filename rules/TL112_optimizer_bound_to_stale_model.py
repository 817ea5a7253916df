from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.loops.stale_optimizers import StaleOptimizer
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED


class OptimizerBoundToStaleModel(Rule):
    """The model is replaced after its optimizer was built: the optimizer trains the old one.

    ## What it does
    Flags a rebinding of `model` to a new module object after `opt = X(model.parameters())`
    and before the loop that steps `opt` and uses `model`: a constructor (`torch.nn`, an
    `nn.Module` subclass of the file or the project, `timm.create_model`, `torchvision`),
    `torch.load`, `copy.deepcopy`, `from_pretrained`, `load_from_checkpoint`, a same-file
    factory returning one of these, or a factory of another project module that returns a
    model and is not handed the old one. An optimizer over part of the model
    (`Adam(model.head.parameters())`) goes stale when `model` is rebound. The loop may reach
    the optimizer and the model through a helper it calls. In a trainer class, a rebinding of
    `self.model` later in `__init__` counts when another method steps `self.optimizer`.

    Stays silent on what keeps the same parameters: `.to()`, `.cuda()`, DDP/FSDP wrappers,
    `torch.compile`, `accelerator.prepare`, `amp.initialize`, `convert_sync_batchnorm`, and
    `load_state_dict` (in place); on an optimizer rebuilt (or given `add_param_group`) after
    the rebinding; and on a rebinding in the other arm of an `if` than the optimizer.

    ## Why is this bad?
    An optimizer holds references to the parameter tensors it was given. After
    `model = torch.load(path)` the name points to a different module, whose parameters the
    optimizer has never seen: `opt.step()` keeps updating the old, now unused, model, and the
    model being trained and evaluated never changes. The loss curve stays flat and no error
    is raised.

    ## Example
    ```python
    model = Net()
    optimizer = torch.optim.Adam(model.parameters())
    if args.resume:
        model = torch.load(args.checkpoint)
    for x, y in loader:
        ...
        optimizer.step()
    ```

    ## Use instead
    ```python
    model = Net()
    if args.resume:
        model.load_state_dict(torch.load(args.checkpoint))
    optimizer = torch.optim.Adam(model.parameters())
    ```
    """

    code = "TL112"
    name = "optimizer-bound-to-stale-model"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("parameters(",)
    block_triggers = (*triggers, IMPORTED)
    summary = "The model is rebound to a new module after its optimizer was built."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in model.stale_optimizers:
            yield Violation(found.rebinding.statement, _message(model, found), _fix(found))


def _message(model: TrainingModel, found: StaleOptimizer) -> str:
    made = model.text_of(found.made_by)
    if len(made) > 50 or "\n" in made:
        made = made.split("(", 1)[0] + "(...)"
    target = found.creation.target
    trainer = found.trainer
    if isinstance(trainer, cst.Call):
        name = model.text_of(trainer.func)
        where = f"`{name}(...)` at {model.where(trainer)}"
    else:
        where = f"the loop at {model.where(trainer)}"
    return (
        f"`{found.owner}` is rebound to a new module (`{made}`) after `{target}` was built from "
        f"its parameters at {model.where(found.creation.call)}; {where} steps `{target}`, "
        f"which still updates the old module's parameters, so the new `{found.owner}` never "
        "trains"
    )


def _fix(found: StaleOptimizer) -> Fix:
    return Fix(
        f"build `{found.creation.target}` after the final binding of `{found.owner}`, or load "
        f"the weights in place (`{found.owner}.load_state_dict(...)`)"
    )
