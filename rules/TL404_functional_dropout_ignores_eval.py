from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.keras_calls import keras_call_method, training_guarded
from trainlint.model.syntax.nodes import keyword, positional
from trainlint.model.syntax.scopes import CallSite, Scope
from trainlint.rule import Span, TextEdit, Violation

#: Functional dropouts and the default of their ``training`` argument.
_DROPOUTS = {
    "torch.nn.functional.dropout": True,
    "torch.nn.functional.dropout1d": True,
    "torch.nn.functional.dropout2d": True,
    "torch.nn.functional.dropout3d": True,
    "torch.nn.functional.alpha_dropout": False,
    "torch.nn.functional.feature_alpha_dropout": False,
}
#: TensorFlow's functional dropouts: they always drop (no ``training`` argument at all).
_TF_DROPOUTS = {
    "tensorflow.nn.dropout",
    "tensorflow.nn.experimental.stateless_dropout",
    "tensorflow.keras.backend.dropout",
}


class FunctionalDropoutIgnoresEval(Rule):
    """`F.dropout` in a module's method without `training=self.training`; `tf.nn.dropout` in
    a keras `call()` with no training guard.

    ## What it does
    Flags `F.dropout`, `F.dropout1d/2d/3d`, `F.alpha_dropout` and `F.feature_alpha_dropout`
    called inside a method of an `nn.Module` subclass (also a function nested in one) with no
    `training` argument, by keyword or position.

    Silent on an explicit `training=` of any value (`training=True` is Monte Carlo dropout on
    purpose), calls that pass `**kwargs`, a dropout that runs only while training (`if
    self.training and p > 0: x = F.dropout(x, p)`, `... if self.training else x`), and
    functional code outside modules.

    TensorFlow: `tf.nn.dropout` (also `tf.compat.v1.nn.dropout`, the keras backend's `dropout`)
    called in the `call()` of a keras `Layer`/`Model` subclass with no training guard: no `if
    training:` / `... if training else x` around it, no earlier `if not training: return x`, no
    `tf.cond(training, ...)` / `K.in_train_phase(...)` choosing it, and no rate computed from
    the flag. Silent on keras `Dropout` layers (they follow `training`), on TF 1 graph code
    outside `call()` (`keep_prob` fed per run), and on Monte Carlo dropout layers (`MCDropout`).

    ## Why is this bad?
    The functional form does not know about `model.eval()`: `F.dropout` defaults to
    `training=True`, so it keeps zeroing activations at evaluation and inference time, and
    every prediction is noisy. (`F.alpha_dropout` defaults to `training=False`, the opposite
    mistake: it never drops, even while training.) `nn.Dropout` modules follow the mode; the
    functional call only does when it is told.

    ## Example
    ```python
    class Net(nn.Module):
        def forward(self, x):
            x = F.relu(self.fc1(x))
            x = F.dropout(x, p=0.5)
            return self.fc2(x)
    ```

    ## Use instead
    ```python
    class Net(nn.Module):
        def forward(self, x):
            x = F.relu(self.fc1(x))
            x = F.dropout(x, p=0.5, training=self.training)
            return self.fc2(x)
    ```
    In a keras layer, drop only while training (or use `keras.layers.Dropout`):
    ```python
    class Block(keras.layers.Layer):
        def call(self, x, training=None):
            if training:
                x = tf.nn.dropout(x, rate=0.1)
            return self.dense(x)
    ```
    """

    code = "TL404"
    name = "functional-dropout-ignores-eval"
    severity = Severity.ERROR
    frameworks = ("torch", "tf")
    triggers = ("dropout",)
    block_triggers = triggers
    summary = (
        "`F.dropout` without `training=self.training` (or an unguarded `tf.nn.dropout` in a "
        "keras `call`) ignores eval mode."
    )
    fix_availability = "sometimes"
    fix_applicability = Applicability.SAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for site in model.calls:
            qualified = site.qualified or ""
            if qualified in _TF_DROPOUTS:
                found = _unguarded_tf_dropout(model, site)
                if found is not None:
                    yield found
                continue
            if qualified not in _DROPOUTS:
                continue
            call = site.node
            if keyword(call, "training") is not None or positional(call, 2) is not None:
                continue
            if any(arg.star for arg in call.args):
                continue  # ``F.dropout(x, **cfg)``: the flag may be in there
            owner = _module_self(model, site.scope)
            if owner is None:
                continue
            if _DROPOUTS[qualified] and training_guarded(model, site, site.scope):
                continue  # ``if self.training: x = F.dropout(x, p)``: it runs only in training
            yield _violation(model, call, owner, _DROPOUTS[qualified])


def _unguarded_tf_dropout(model: TrainingModel, site: CallSite) -> Violation | None:
    method = keras_call_method(model, site.scope)
    if method is None or method.cls is None or training_guarded(model, site, method):
        return None
    name = method.cls.name
    if name.startswith("MC") or "montecarlo" in name.lower() or "bayes" in name.lower():
        return None  # Monte Carlo dropout: dropping at inference is the point
    shown = model.text_of(site.node)
    if "\n" in shown:
        shown = f"{model.text_of(site.node.func)}(...)"
    where = f"`{shown}` in `{name}.call`"
    if "training" in method.params:
        what = f"{where} ignores `training`: `tf.nn.dropout` has no inference mode"
    else:
        what = f"{where} always drops: `call` takes no `training` flag and `tf.nn.dropout` has none"
    return Violation(
        site.node,
        f"{what}, so it keeps dropping at evaluation and inference (`predict`, `evaluate`) and "
        "every prediction is noisy",
        Fix(
            "drop only while training (`if training: x = tf.nn.dropout(x, rate)`) or use a "
            "`keras.layers.Dropout` layer, which follows `training`"
        ),
    )


def _module_self(model: TrainingModel, scope: Scope) -> str | None:
    """The name of ``self`` when ``scope`` is (inside) a method of an ``nn.Module``."""
    cls = scope.cls
    if cls is None or not model.is_module_class(cls):
        return None
    current: Scope | None = scope
    while current is not None and current.cls is cls:
        if current.node in (m.node for m in cls.methods.values()):
            params = current.params
            return params[0] if params and params[0] not in ("cls",) else None
        current = current.parent
    return None


def _violation(model: TrainingModel, call: cst.Call, owner: str, default: bool) -> Violation:
    shown = model.text_of(call)
    if "\n" in shown:
        shown = f"{model.text_of(call.func)}(...)"
    if default:
        message = (
            f"`{shown}` has no `training` argument, so it keeps dropping activations after "
            "`model.eval()`: evaluation and inference are noisy"
        )
    else:
        message = (
            f"`{shown}` has no `training` argument, and its default is False: it never drops "
            "anything, even while training"
        )
    flag = f"{owner}.training"
    description = f"pass `training={flag}` (or use an `nn.Dropout` module)"
    found = model.positions.get(call.args[-1].value) if call.args else None
    if found is None:
        return Violation(call, message, Fix(description))
    end = found.end
    edit = TextEdit(Span(end.line, end.column + 1, end.line, end.column + 1), f", training={flag}")
    return Violation(
        call,
        message,
        Fix(description, f"training={flag}", (edit,), Applicability.SAFE),
    )
