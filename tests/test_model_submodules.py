"""Unregistered submodules and grad tensors of torch modules (``model.unregistered_attributes``)."""

from __future__ import annotations

from model_helpers import build

from trainlint.model import ClassKind

SOURCE = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.listed = [nn.Linear(2, 2)]
        self.filled = []
        self.filled.append(nn.Conv2d(1, 1, 1))
        self.refs = [self.fc]
        self.hidden = [teacher]
        self.acts = [nn.ReLU(), nn.Tanh()]
        self.sizes = [1, 2]
        self.weight = torch.randn(2, requires_grad=True)
        self.plain = torch.randn(2)
        self.wrapped = [nn.Linear(2, 2)]
        self.wrapped = nn.ModuleList(self.wrapped)
        self.named = torch.zeros(2, requires_grad=True)
        self.register_parameter("named_p", nn.Parameter(self.named))


class NotAModule:
    def __init__(self):
        self.members = [nn.Linear(2, 2)]
"""


def test_unregistered_attributes_of_torch_modules() -> None:
    model = build(SOURCE)
    found = {(f.attribute, f.container) for f in model.unregistered_attributes}
    assert found == {("listed", "list"), ("filled", "list"), ("weight", "tensor")}


def test_registering_by_hand_silences_the_class() -> None:
    model = build(SOURCE.replace('self.register_parameter("named_p"', 'self.add_module("m"'))
    assert not [f for f in model.unregistered_attributes if f.owner.name == "Net"]


def test_mlx_and_flax_modules_are_not_torch_modules() -> None:
    model = build(
        """
        import mlx.nn as mnn
        import flax.linen as fnn

        class A(mnn.Module):
            pass

        class B(fnn.Module):
            pass
        """
    )
    assert model.class_kind(model.classes["A"]) is ClassKind.LIBRARY
    assert model.class_kind(model.classes["B"]) is ClassKind.LIBRARY
    assert not model.is_module_class(model.classes["A"])


def test_elements_registered_through_another_attribute_and_parameter_lists() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = [nn.Linear(2, 2) for _ in range(2)]
                self.body = nn.Sequential(*self.blocks)
                self.scales = [nn.Parameter(torch.ones(1)) for _ in range(2)]
        """
    )
    found = model.unregistered_attributes
    assert [(f.attribute, f.parameters) for f in found] == [("scales", True)]


def test_lookup_table_whose_chosen_element_is_registered_as_another_attribute() -> None:
    model = build(
        """
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self, name):
                super().__init__()
                self.table = {"a": nn.Linear(2, 2), "b": nn.Linear(2, 4)}
                self.chosen = self.table[name]
                self.options = {"a": nn.Conv2d(1, 1, 1), "b": nn.Conv2d(1, 2, 1)}
                self.trunk = self._get(name)
                self.unused = {"a": nn.Linear(2, 2), "b": nn.Linear(2, 3)}
                self.other = self._make(name)

            def _get(self, name):
                found = self.options[name]
                return found

            def _make(self, name):
                return nn.Linear(2, 2)
        """
    )
    assert [f.attribute for f in model.unregistered_attributes] == ["unused"]
