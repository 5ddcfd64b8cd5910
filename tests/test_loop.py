"""The loop bookkeeping shared by fit, fit_rnn and meta_train: checkpoints at multiples of checkpoint_every and at
a normal end (not after an exception), and a progress bar that is closed either way."""

import pytest

from credit_tutorial.loop import checkpointed_loop


def run(steps, *, every, fail_at=None, progress=False, with_save=True):
    saved = []
    save = (lambda: saved.append(step)) if with_save else None
    step = 0
    with checkpointed_loop(save, every, progress=progress, total=steps, initial=0, unit="step") as loop:
        while step < steps:
            step += 1
            if step == fail_at:
                raise RuntimeError("killed")
            loop.advance(1)
            if loop.showing:
                loop.show({"step": str(step)})
            loop.step_done(step)
    return saved, loop


def test_checkpoints_at_intervals_and_at_the_end():
    saved, loop = run(7, every=3)
    assert saved == [3, 6, 7] and not loop.showing


def test_no_final_checkpoint_after_an_exception():
    saved = []

    def save():
        saved.append(len(saved))

    with pytest.raises(RuntimeError, match="killed"):
        with checkpointed_loop(save, 2, progress=False) as loop:
            for step in range(1, 6):
                if step == 5:
                    raise RuntimeError("killed")
                loop.step_done(step)
    assert len(saved) == 2  # steps 2 and 4: the last periodic checkpoint stays, nothing half-finished is saved


def test_without_a_checkpoint_nothing_is_saved_and_the_bar_is_closed():
    saved, loop = run(4, every=2, with_save=False, progress=True)
    assert saved == [] and loop.showing
    assert loop.bar.disable and loop.bar.n == 4  # tqdm marks a closed bar disabled

    opened = []
    with pytest.raises(RuntimeError, match="killed"):
        with checkpointed_loop(None, None, progress=True, total=4) as loop:
            opened.append(loop)
            loop.advance(1)
            raise RuntimeError("killed")
    assert opened[0].bar.disable, "the bar is closed after an exception too"
