"""The training engine: examples to tokens (:mod:`.encode`), losses, and the Trainer behind the ``train`` stage."""
