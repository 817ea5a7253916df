"""Framework structure recognized once: torch data pipelines, worker RNG, data splits; keras
models, ``compile()``, tf.data chains, tapes.

* :mod:`.data`, :mod:`.splits`, :mod:`.workers` -- datasets, loaders, train/eval splits, the
  NumPy draws made in loader workers;
* :mod:`.keras_layers` -- what one keras layer does: its activation, pass-through layers,
  training-dependent layers, pretrained bases;
* :mod:`.keras_models` -- models built with ``Sequential``/``.add()``, the functional API or a
  ``keras.Model`` subclass: their layers and the head (final layer, activation) of each output;
* :mod:`.keras_compile` -- ``compile()``'s losses (string, class, function; ``from_logits``)
  and metrics, per output;
* :mod:`.tfdata`, :mod:`.tfdata_stages` -- ``tf.data`` pipelines: the stages (map, batch,
  shuffle, cache, ...) each dataset went through, through chains and rebinding, from its
  source; which map functions draw at random (:mod:`.tfdata_random`);
* :mod:`.keras_trainable` -- ``trainable`` changes made after ``compile()`` that a later
  ``fit()`` does not see.
"""
