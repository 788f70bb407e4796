"""Curated and replay batches, chosen step by step: the ``curation_prob`` of student training.

Two ways of mixing (``curation_mixing``):

- ``replace`` (the paper's code, the paper YAMLs' default): at each step of the
  replay loader, with probability ``p`` the replay batch is *replaced* by the
  next curated batch. An epoch is the replay loader's length; ``p = 1``
  trains on curated pairs only.
- ``insert`` (ours): before each replay batch, curated steps are drawn until a
  draw fails (a geometric number, mean ``p / (1 - p)``), then the replay batch
  is trained on too: every replay pair is seen once per epoch, and a share
  ``p`` of the steps are curated. ``p < 1``.
"""

import math

import torch
import speechbrain as sb
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from dataset.clips import EpochState
from experiment.key_tables import CHOICES

__all__ = ["CURATION_MIXING", "CurationMixer", "planned_steps"]

#: The values of ``curation_mixing``.
CURATION_MIXING = CHOICES["curation_mixing"]


def planned_steps(replay_steps, prob, mixing):
    """Expected optimizer steps of a run with ``replay_steps`` replay batches (the cosine schedule's length).

    Example
    -------
    >>> planned_steps(100, 0.5, "replace"), planned_steps(100, 0.5, "insert")
    (100, 200)
    """
    if mixing == "replace":
        return int(replay_steps)
    return int(math.ceil(replay_steps / (1.0 - prob)))


@register_checkpoint_hooks
class CurationMixer:
    """Chooses, step by step, between a curated batch (probability ``prob``) and the replay batch.

    With ``mixing="replace"`` each replay step draws once: curated (the replay
    batch is dropped) or replay. With ``mixing="insert"`` curated steps are
    drawn before each replay batch until a draw fails.

    The curated loader cycles: when exhausted it starts a new, reshuffled
    pass. The mixer's random state and its position in the curated set are
    checkpointed, so a resumed run makes the same choices and sees the same
    curated batches as an uninterrupted one.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The curated pairs (:func:`dataset.pipelines.caption_dataset`).
    prob : float
        Probability that a draw takes a curated batch.
    batch_size : int
        Pairs per curated batch.
    seed : int
        Seed of the pass order and of the draws.
    num_workers : int
        DataLoader workers.
    epoch_state : EpochState, optional
        Told the pass number (the random crops' seed).
    mixing : str
        ``"replace"`` or ``"insert"`` (see the module's docstring).
    """

    def __init__(self, dataset, prob, batch_size, seed, num_workers=0, epoch_state=None, mixing="insert"):
        if mixing not in CURATION_MIXING:
            raise ValueError(f"curation_mixing must be one of {CURATION_MIXING}, got {mixing!r}")
        if mixing == "insert" and not 0.0 <= prob < 1.0:
            raise ValueError(f"curation_mixing=insert needs curation_prob < 1, got {prob}")
        self.mixing = mixing
        self.prob = float(prob)
        self.seed = seed
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.drop_last = len(dataset) >= 2 * self.batch_size
        self.epoch_state = epoch_state or EpochState()
        self.sampler = ReproducibleRandomSampler(dataset, seed=seed)
        self.generator = torch.Generator().manual_seed(seed + 1)
        # The loaders' own generator: starting a pass must not draw from the global RNG.
        self.loader_generator = torch.Generator().manual_seed(seed)
        self.cycle = 0
        self.position = 0
        self._iterator = None
        self.counts = {"curated": 0, "replay": 0}

    def take_curated(self):
        """Draws one Bernoulli(prob): True means the next step uses a curated batch."""
        return bool(torch.rand((), generator=self.generator) < self.prob)

    def step_batches(self, replay_batch):
        """The batches one step of the replay loader trains on, in order (counted in ``counts``)."""
        if self.mixing == "replace":
            if self.take_curated():
                self.counts["curated"] += 1
                return [self.next_batch()]
            self.counts["replay"] += 1
            return [replay_batch]
        batches = []
        while self.take_curated():
            self.counts["curated"] += 1
            batches.append(self.next_batch())
        self.counts["replay"] += 1
        return batches + [replay_batch]

    def pass_batches(self):
        """The batches (lists of item indices) of the current pass from the current position on.

        The order is the sampler's for this pass (reshuffled per pass); a
        resumed run starts at the batch it stopped at, without reading the
        audio of the batches before it.
        """
        self.sampler.set_epoch(self.cycle)
        order = list(iter(self.sampler))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches[self.position:]

    def next_batch(self):
        """The next curated batch, starting a new pass when the current one ends."""
        while True:
            if self._iterator is None:
                self.epoch_state.epoch = self.cycle
                loader = sb.dataio.dataloader.make_dataloader(
                    self.dataset, batch_sampler=self.pass_batches(), num_workers=self.num_workers,
                    generator=self.loader_generator,
                )
                self._iterator = iter(loader)
            try:
                batch = next(self._iterator)
                self.position += 1
                return batch
            except StopIteration:
                self._iterator = None
                self.cycle += 1
                self.position = 0

    @mark_as_saver
    def save(self, path):
        """Writes the draw generator's state and the position in the curated passes."""
        torch.save({"generator": self.generator.get_state(), "cycle": self.cycle, "position": self.position}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores what :meth:`save` wrote."""
        del end_of_epoch
        state = torch.load(path, weights_only=True)
        self.generator.set_state(state["generator"])
        self.cycle, self.position = int(state["cycle"]), int(state["position"])
        self._iterator = None
