from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.values.activations import implicit_softmax_dims
from trainlint.rule import Violation


def _with_dim(call: cst.Call) -> cst.Call:
    args = list(call.args)
    if args and args[-1].comma is cst.MaybeSentinel.DEFAULT:
        args[-1] = args[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
    dim = cst.Arg(
        value=cst.parse_expression("-1"),
        keyword=cst.Name("dim"),
        equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
    )
    return call.with_changes(args=[*args, dim])


class SoftmaxAmbiguousDim(Rule):
    """A softmax without `dim`: PyTorch guesses the axis from the input's rank.

    ## What it does
    Flags `nn.Softmax()`, `nn.LogSoftmax()`, `F.softmax(x)`, `F.log_softmax(x)` and
    `torch.softmax(x)` written without `dim` (or with `dim=None`).

    ## Why is this bad?
    With no `dim`, PyTorch picks one from the number of dimensions of the input (0 for 0-,
    1- and 3-D inputs, 1 otherwise) and warns that this is deprecated. For a batch of
    sequences `(N, T, C)` that is dim 0: the softmax normalizes across the batch, not across
    the classes, and every prediction depends on the other samples.

    ## Example
    ```python
    self.head = nn.Sequential(nn.Linear(hidden, n_classes), nn.Softmax())
    ```

    ## Use instead
    ```python
    self.head = nn.Sequential(nn.Linear(hidden, n_classes), nn.Softmax(dim=-1))
    ```
    When the input is the output of a linear layer, its last axis is the class axis and
    `--fix` adds `dim=-1` (a safe fix: for 1-D and 2-D inputs it is the axis PyTorch picked
    anyway). Elsewhere the axis is left for you to choose.
    """

    code = "TL305"
    name = "softmax-ambiguous-dim"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("softmax", "Softmax")
    block_triggers = triggers
    summary = "A softmax/log_softmax without `dim` lets PyTorch guess the axis."
    fix_availability = "sometimes"
    fix_applicability = Applicability.SAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for site, given_none, source in implicit_softmax_dims(model):
            label = model.text_of(site.node.func)
            message = (
                f"`{label}` without `dim`: PyTorch infers the axis from the input's rank "
                "(dim 0 for a 3-D input), which may not be the class axis"
            )
            if source is not None and source.is_linear_output:
                edit = (
                    Edit(given_none, "-1")
                    if given_none is not None
                    else Edit(site.node, _with_dim(site.node))
                )
                fix = Fix(
                    f"the input is the output of {source.producer}: its last axis is the "
                    "class axis",
                    "dim=-1",
                    (edit,),
                    Applicability.SAFE,
                )
            else:
                fix = Fix("pass the class axis explicitly", "dim=-1 (or dim=1 for (N, C, H, W))")
            yield Violation(site.node, message, fix)
