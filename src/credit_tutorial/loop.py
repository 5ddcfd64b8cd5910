"""What every long training loop of the package shares: a progress bar and checkpoints at intervals and at the end.

:func:`training.fit <credit_tutorial.training.fit>`, the recurrent ``fit_rnn`` and FLP's ``meta_train`` each run
their own steps inside one :func:`checkpointed_loop`::

    with checkpointed_loop(save, checkpoint_every, progress=progress, total=..., initial=..., unit="samples") as loop:
        while step < total:
            ...                        # one training step
            loop.advance(batch_size)   # the progress bar
            loop.step_done(step)       # a checkpoint when step is a multiple of checkpoint_every

The final checkpoint is written when the loop ends normally; an exception (a divergence, a kill) leaves the last
periodic one in place, from which ``resume=True`` continues.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


class Loop:
    """The progress bar (``None`` without one) and the periodic checkpoint of one running loop."""

    def __init__(self, bar, save: Callable[[], object] | None, checkpoint_every: int | None):
        self.bar, self._save, self._every = bar, save, checkpoint_every

    @property
    def showing(self) -> bool:
        """Whether there is a progress bar (compute what :meth:`show` displays only then)."""
        return self.bar is not None

    def advance(self, amount: int) -> None:
        """Move the progress bar on by ``amount`` (samples, episodes, …)."""
        if self.bar is not None:
            self.bar.update(amount)

    def show(self, values: dict[str, str]) -> None:
        """Display ``values`` (already formatted) next to the bar."""
        if self.bar is not None:
            self.bar.set_postfix(values)

    def step_done(self, step: int) -> None:
        """Write a checkpoint when one is kept and ``step`` is a multiple of ``checkpoint_every``."""
        if self._save is not None and self._every is not None and step % self._every == 0:
            self._save()


@contextmanager
def checkpointed_loop(save: Callable[[], object] | None, checkpoint_every: int | None, *, progress: bool,
                      **bar_options) -> Iterator[Loop]:
    """A :class:`Loop` for the ``with`` block; afterwards the bar is closed and, if the block ended normally,
    ``save()`` writes the final checkpoint.

    save: writes the checkpoint (``None``: no checkpoint is kept). progress: show a tqdm bar, made with
    ``bar_options`` (``total``, ``initial``, ``unit``, ``desc``, …; ``dynamic_ncols`` is always on).
    """
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(dynamic_ncols=True, **bar_options)
    try:
        yield Loop(bar, save, checkpoint_every)
    finally:
        if bar is not None:
            bar.close()
    if save is not None:
        save()
