"""The training data as an endless stream of batches that knows where it is.

A resumed run must see the very batches the uninterrupted run would have seen next. Two kinds
of source make that possible:

- a step-indexed function `batch_fn(i) -> batch` (i = 0, 1, 2, ... counts micro-batches): its
  position is just i, as in nanoGPT when each batch is drawn from a generator seeded by i;
- a DataLoader (or any re-iterable of batches): the position is (epoch, batches taken in this
  epoch) plus the state of the loader's shuffling generator when the epoch began. Resuming
  puts that generator back, re-draws the epoch's order and skips the batches already used.
"""

from __future__ import annotations

import numpy as np

from .rng import generator_state, set_generator_state


class BatchStream:
    """next() returns the next batch; state_dict()/load_state_dict() save and restore the
    position (JSON-able fields and the generator state)."""

    def __init__(self, data=None, batch_fn=None):
        if (data is None) == (batch_fn is None):
            raise ValueError("BatchStream: give exactly one of train_data and batch_fn")
        self.data, self.batch_fn = data, batch_fn
        self.index = 0  # micro-batches drawn so far
        self.epoch = 0
        self.position = 0  # batches taken in the current epoch
        self._it = None
        self._epoch_start = None  # the shuffling generator's state when the epoch began

    def _generator(self):
        gen = getattr(self.data, "generator", None)
        return gen if isinstance(gen, np.random.Generator) else None

    def __len__(self) -> int:
        return len(self.data)

    def next(self):
        if self.batch_fn is not None:
            batch = self.batch_fn(self.index)
            self.index += 1
            return batch
        if self._it is None:
            gen = self._generator()
            self._epoch_start = generator_state(gen) if gen is not None else None
            self._it = iter(self.data)
        try:
            batch = next(self._it)
        except StopIteration:
            if self.position == 0:
                raise ValueError(
                    "the training data produced no batch (empty dataset, or drop_last with "
                    "fewer examples than batch_size)"
                ) from None
            self.epoch, self.position, self._it = self.epoch + 1, 0, None
            return self.next()
        self.position += 1
        self.index += 1
        return batch

    def state_dict(self) -> dict:
        state = {"index": self.index, "epoch": self.epoch, "position": self.position}
        if self._epoch_start is not None and self.position > 0:
            state["epoch_start"] = self._epoch_start
        return state

    def load_state_dict(self, state: dict) -> None:
        """Go back to a saved position. Call before restoring the global generators: the
        skipped batches may draw from them (a loader shuffling with tinytorch's generator)."""
        self.index, self.epoch = int(state["index"]), int(state["epoch"])
        self.position, self._it, self._epoch_start = 0, None, None
        if self.batch_fn is not None or int(state["position"]) == 0:
            return
        gen = self._generator()
        if "epoch_start" in state and gen is not None:
            set_generator_state(gen, state["epoch_start"])
            self._epoch_start = state["epoch_start"]
        self._it = iter(self.data)
        for _ in range(int(state["position"])):  # re-draw the order, skip what was used
            next(self._it)
        self.position = int(state["position"])
