"""Discarded results (``model.unused_result``) and overrides returning nothing."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
from model_helpers import build

from trainlint.model import TrainingModel
from trainlint.model.syntax.nodes import dotted


def _call(model: TrainingModel, text: str):
    """The call site whose source is ``text`` (first match)."""
    for site in model.calls:
        if model.text_of(site.node) == text:
            return site
    raise KeyError(text)


def _discarded(source: str, call: str):
    model = build(source)
    site = _call(model, call)
    return model.unused_result(site.node, site.scope)


def test_a_call_that_is_its_own_statement_is_discarded() -> None:
    found = _discarded("def f(m):\n    m.load(1)\n", "m.load(1)")
    assert found is not None and found.unread == ()
    assert isinstance(found.statement, cst.SimpleStatementLine)


def test_a_statement_sharing_its_line_is_discarded_without_a_statement() -> None:
    found = _discarded("def f(m):\n    m.load(1); m.other()\n", "m.load(1)")
    assert found is not None and found.statement is None


def test_names_nobody_reads_are_discarded_names() -> None:
    found = _discarded("def f(m):\n    msg = m.load(1)\n    return m\n", "m.load(1)")
    assert found is not None and found.unread == ("msg",)
    found = _discarded("def f(m):\n    a, b = m.load(1)\n", "m.load(1)")
    assert found is not None and found.unread == ("a", "b")


def test_reads_keep_the_result() -> None:
    reads = [
        "    msg = m.load(1)\n    print(msg)\n",
        "    msg = m.load(1)\n    def later():\n        return msg\n    return later\n",
        "    a, b = m.load(1)\n    assert not b\n",
        "    msg = m.load(1)\n    log[msg] = 1\n",
        "    msg = m.load(1)\n    msg += 1\n",
        "    global msg\n    msg = m.load(1)\n",
        "    return m.load(1)\n",
        "    print(m.load(1))\n",
        "    _ = m.load(1)\n",
    ]
    for body in reads:
        assert _discarded(f"def f(m):\n{body}", "m.load(1)") is None, body


def test_other_names_do_not_count_as_reads() -> None:
    source = "def f(m):\n    msg = m.load(1)\n    m.msg = 2\n    g(msg=3)\n"
    found = _discarded(source, "m.load(1)")
    assert found is not None and found.unread == ("msg",)


def test_module_level_names_may_be_imported_so_they_are_not_unread() -> None:
    assert _discarded("msg = m.load(1)\n", "m.load(1)") is None


def test_a_notebook_cell_last_line_is_displayed() -> None:
    text = "m.load(1)\n\nm.load(2)\nx = 1\n\nm.load(3)\n# shown\n"
    model = TrainingModel(cst.parse_module(text), Path("nb.ipynb"), text)
    results = {
        call: model.unused_result(_call(model, call).node, model.module_scope)
        for call in ("m.load(1)", "m.load(2)", "m.load(3)")
    }
    assert results["m.load(1)"] is None  # followed by the blank line between cells
    assert results["m.load(2)"] is not None
    assert results["m.load(3)"] is None  # only comments before the cell ends
    script = TrainingModel(cst.parse_module(text), Path("run.py"), text)
    assert script.unused_result(_call(script, "m.load(1)").node, script.module_scope)


def test_overrides_that_return_nothing() -> None:
    model = build(
        """
        class Quiet:
            def load_state_dict(self, state, strict=True):
                self.state = state

        class Loud:
            def load_state_dict(self, state, strict=True):
                return self.inner.load_state_dict(state, strict)

            def reload(self, state):
                self.load_state_dict(state, strict=False)

        class Plain:
            pass

        def f(state, other):
            quiet, loud, plain = Quiet(), Loud(), Plain()
            q = Quiet()
            l = Loud()
            p = Plain()
            q.load_state_dict(state, strict=False)
            l.load_state_dict(state, strict=False)
            p.load_state_dict(state, strict=False)
            other.load_state_dict(state, strict=False)
        """
    )
    answers = {}
    for site in model.calls:
        func = site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "load_state_dict":
            receiver = dotted(func.value)
            answers[receiver] = model.own_method_returns_nothing(
                func.value, site.scope, "load_state_dict"
            )
    assert answers["q"] is True
    assert answers["l"] is False
    assert answers["p"] is None
    assert answers["other"] is None
    assert answers["self.inner"] is None
    assert answers["self"] is False  # ``Loud.reload`` calls its own override, which returns


def test_a_cell_script_cell_ends_before_its_marker() -> None:
    text = "import torch\n# %%\nm.load(1)\n# %%\nm.load(2)\nprint(1)\n"
    model = TrainingModel(cst.parse_module(text), Path("run.py"), text)
    scope = model.module_scope
    assert model.unused_result(_call(model, "m.load(1)").node, scope) is None
    assert model.unused_result(_call(model, "m.load(2)").node, scope) is not None


def test_state_dicts_filtered_to_the_modules_own_keys() -> None:
    model = build(
        """
        def f(model, other, ckpt):
            own = model.state_dict()
            kept = {k: v for k, v in ckpt.items() if k in own}
            shaped = {k: v for k, v in ckpt.items() if k in own.keys() and v.ndim}
            renamed = {k[9:]: v for k, v in ckpt.items() if k.startswith("backbone.")}
            inline = {k: v for k, v in ckpt.items() if k in other.state_dict()}
            model.load_state_dict(kept, strict=False)
            model.load_state_dict(shaped, strict=False)
            model.load_state_dict(renamed, strict=False)
            model.load_state_dict(inline, strict=False)
            other.load_state_dict(inline, strict=False)
        """
    )
    answers = []
    for site in model.calls:
        func = site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "load_state_dict":
            state = site.node.args[0].value
            answers.append(
                (
                    dotted(func.value),
                    dotted(state),
                    model.matched_to_own_keys(state, func.value, site.scope),
                )
            )
    assert answers == [
        ("model", "kept", True),
        ("model", "shaped", True),
        ("model", "renamed", False),
        ("model", "inline", False),  # filtered to another module's keys
        ("other", "inline", True),
    ]


def test_state_dicts_copied_from_another_live_module() -> None:
    model = build(
        """
        import torch

        enc.load_state_dict(dec.state_dict(), strict=False)
        saved = teacher.state_dict()
        student.load_state_dict(saved, strict=False)
        student.load_state_dict(torch.load("ckpt.pt"), strict=False)
        student.load_state_dict(student.state_dict(), strict=False)
        """
    )
    loads = [s.node for s in model.calls if dotted(s.node.func).endswith("load_state_dict")]
    module = model.module_scope
    found = [
        model.copied_from_module(c.args[0].value, c.func.value, module)  # type: ignore[attr-defined]
        for c in loads
    ]
    # a checkpoint file, and the receiver's own dict, are no copy between two modules
    assert found == [True, True, False, False]
