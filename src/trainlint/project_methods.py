"""A class's methods of another module, summarized when first asked for.

A class of another module is mostly looked up for what it is (an ``nn.Module``, its final
activation, a meter, its bases), and only a stub of it (:mod:`trainlint.model.summaries.stubs`:
an instance's method called, an inherited method) needs every method: on four real
repositories, 26 of 42 classes summarized never got a stub. So a class's summary is made with
its forward only (the final activation is read off it), and :class:`LazyMethods` summarizes the
others off the model of the class's excerpt when they are asked for. The model is kept while
the class is one of the last few summarized (a stub usually follows its class's lookup at once),
else made again from the same excerpt, which gives the same summaries. Every method is in the
summary's JSON and digest (for the cache), which are made only when a cache is written.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.summaries.types import FunctionSummary

#: Models of class excerpts kept for their methods, most recent first.
MODELS_KEPT = 8


class LazyMethods:
    """The method summaries of one class (``name``) of ``module``, made when asked for."""

    def __init__(self, index: Any, module: Any, name: str, model: TrainingModel) -> None:
        self.names: tuple[str, ...] = ()  # set by the class's summary: every method, in order
        self._index = index  # the ProjectIndex: makes the excerpt's model again
        self._module = module
        self._name = name
        self._model: TrainingModel | None = model
        self._built: dict[str, FunctionSummary | None] = {}

    @property
    def complete(self) -> bool:
        return len(self._built) == len(self.names)

    def summary(self, name: str) -> FunctionSummary | None:
        if name not in self._built:
            from trainlint.model.summaries.build import summarize_method

            made = self._model is None
            if made:
                self._model = self._index.remodel(self._module, self._name)
            model = self._model
            try:
                found = summarize_method(model, self._name, name) if model else None
            except Exception:  # a method we cannot model is a method without a summary
                found = None
            self._built[name] = found
            keeper: KeptModels = self._index.kept_models
            if self.complete and (made or self in keeper):
                self.drop()  # every method summarized: the model is not needed any more
            elif made:
                keeper.keep(self)
        return self._built[name]

    def keep(self) -> None:
        self._index.kept_models.keep(self)

    def drop(self) -> None:
        """Release the model (by reference counting: no collection needed to free it)."""
        self._index.kept_models.forget(self)
        if self._model is not None:
            self._model.release()
            self._model = None


class KeptModels:
    """The :class:`LazyMethods` whose models are kept: the last ``size``, the older dropped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: OrderedDict[int, LazyMethods] = OrderedDict()

    def __contains__(self, methods: object) -> bool:
        return id(methods) in self._kept

    def keep(self, methods: LazyMethods) -> None:
        self._kept[id(methods)] = methods
        self._kept.move_to_end(id(methods))
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)[1].drop()

    def forget(self, methods: LazyMethods) -> None:
        self._kept.pop(id(methods), None)
