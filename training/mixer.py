"""Curated and replay batches, chosen step by step: the ``curation_prob`` of student training."""

import torch
import speechbrain as sb
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from dataset.clips import EpochState

__all__ = ["CurationMixer"]


@register_checkpoint_hooks
class CurationMixer:
    """Chooses, step by step, between a curated batch (probability ``prob``) and the replay batch.

    The curated loader cycles: when exhausted it starts a new, reshuffled
    pass. The mixer's random state and its position in the curated set are
    checkpointed, so a resumed run makes the same choices and sees the same
    curated batches as an uninterrupted one.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The curated pairs (:func:`dataset.pipelines.caption_dataset`).
    prob : float
        Probability that a step takes a curated batch.
    batch_size : int
        Pairs per curated batch.
    seed : int
        Seed of the pass order and of the draws.
    num_workers : int
        DataLoader workers.
    epoch_state : EpochState, optional
        Told the pass number (the random crops' seed).
    """

    def __init__(self, dataset, prob, batch_size, seed, num_workers=0, epoch_state=None):
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
