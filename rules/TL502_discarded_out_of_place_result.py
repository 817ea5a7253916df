from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.dataflow.discarded import DATASET_METHODS, OutOfPlaceDiscard
from trainlint.model.syntax.nodes import dotted
from trainlint.model.values.evidence import OUT_OF_PLACE_METHODS
from trainlint.rule import Violation
from trainlint.slicing import discarding


class DiscardedOutOfPlaceResult(Rule):
    """An out-of-place tensor or `tf.data` method is called and its result thrown away.

    ## What it does
    Flags an expression statement whose outermost call is an out-of-place tensor method
    (`to`, `cuda`, `cpu`, `float`, `half`, `detach`, `view`, `reshape`, `squeeze`,
    `unsqueeze`, `clamp`, `add`, ...) on a value known to be a tensor, or a `tf.data` method
    (`shuffle`, `batch`, `map`, `repeat`, `prefetch`, `cache`, `filter`) on a value known to
    be a dataset. A value is known to be a tensor from what made it: a torch function
    (`torch.zeros`, `torch.cat`, `F.relu`), a torch module's or a torch loss's output, a tensor
    method or arithmetic on a tensor, an attribute assigned one (`self.mask`), a parameter
    annotated `torch.Tensor` or used as only a tensor can be (`x.unsqueeze(1)`, passed to a
    torch function or module), an element of `model.parameters()`, a batch of a `DataLoader`
    with the default `collate_fn`; never its name alone.

    Stays silent on modules (`model.to(device)` and `model.cuda()` move a module in place),
    on in-place methods (`add_`, `clamp_`, `zero_`), on results used by a chained call
    (`x.view(-1).copy_(y)`), on batches of custom collate functions and other libraries'
    loaders (PyG's `Batch.to()` and HF's `BatchEncoding.to()` work in place), on a `.cpu()`
    in a function that reads a clock (benchmarks copy to the host to wait for the GPU), and
    on the top-level statements of notebook cells (a cell displays its last value).

    ## Why is this bad?
    These methods return a new tensor (or dataset) and leave the original unchanged:
    `x.to(device)` alone leaves `x` on the CPU, `p.data.clamp(-c, c)` clips nothing (WGAN
    weight clipping needs `clamp_`), `ds.shuffle(1000)` alone trains on unshuffled data. The
    code runs without an error and silently does not do what it says.

    ## Example
    ```python
    for images, labels in loader:
        images.to(device)
        labels.to(device)
        loss = criterion(model(images), labels)
    ```

    ## Use instead
    ```python
    for images, labels in loader:
        images = images.to(device)
        labels = labels.to(device)
        loss = criterion(model(images), labels)
    ```

    The fix (unsafe: the program then does what it says, which can change results) assigns
    the result back to the receiver when the receiver is a plain name or attribute.
    """

    code = "TL502"
    name = "discarded-out-of-place-result"
    severity = Severity.ERROR
    frameworks = ("torch", "tf")
    triggers = tuple(f".{m}(" for m in sorted(OUT_OF_PLACE_METHODS | DATASET_METHODS))
    # the call is a statement of its own
    block_triggers = (discarding(*OUT_OF_PLACE_METHODS, *DATASET_METHODS),)
    summary = "An out-of-place tensor/`tf.data` method's result is discarded (`x.to(device)`)."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in model.discarded_results:
            yield Violation(found.statement, _message(model, found), _fix(model, found))


def _message(model: TrainingModel, found: OutOfPlaceDiscard) -> str:
    receiver = model.text_of(found.receiver)
    call = model.text_of(found.call)
    if len(call) > 60 or "\n" in call:
        call = f"{receiver}.{found.method}(...)"
    what = "dataset" if found.dataset else "tensor"
    return (
        f"`{call}` returns a new {what} and leaves `{receiver}` unchanged: the result is "
        "thrown away"
        + (
            f" (the in-place form is `{found.method}_`)"
            if not found.dataset and _has_in_place(found.method)
            else ""
        )
    )


def _has_in_place(method: str) -> bool:
    return method in {
        "clamp", "clip", "add", "sub", "mul", "div", "pow", "abs", "neg", "sqrt", "exp", "log",
        "sigmoid", "tanh", "relu", "masked_fill", "index_fill", "scatter", "round", "floor",
        "ceil", "detach", "squeeze", "unsqueeze", "t", "transpose",
    }  # fmt: skip


def _fix(model: TrainingModel, found: OutOfPlaceDiscard) -> Fix:
    target = dotted(found.receiver)
    if target is None or not isinstance(found.receiver, (cst.Name, cst.Attribute)):
        return Fix("assign the result (or use the in-place `_` method where there is one)")
    call = model.text_of(found.call)
    replacement = f"{target} = {call}"
    return Fix(
        "assign the result back",
        replacement,
        (Edit(found.statement, replacement),),
        Applicability.UNSAFE,
    )
