"""Worker for test_distributed.py, launched with ``torchrun --nproc_per_node=2`` (gloo, CPU).

Each rank embeds its half of a fixed global batch with the same tiny CLAP,
computes the global contrastive loss (gradient-preserving gather) under DDP,
and rank 0 saves the loss and the averaged gradients for comparison with a
single process that holds the whole batch.
"""

import sys

import torch


def build_model(bert_dir):
    """The tiny CLAP both sides use (eval mode: no dropout, fixed BatchNorm statistics)."""
    from conftest import tiny_clap

    return tiny_clap(bert_dir, seed=0, mel_bins=32, classes_num=4).eval()


def global_batch(n=8, vocab=30):
    """A fixed batch: ``n`` clips of 0.5 s and ``n`` token sequences."""
    g = torch.Generator().manual_seed(1)
    wav = torch.randn(n, 8000, generator=g)
    ids = torch.randint(5, vocab, (n, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[::3, 4:] = 0
    return wav, ids, mask


def loss_and_grads(model, wav, ids, mask, ddp=None):
    """Loss of the global batch and the gradient of every parameter (after DDP averaging)."""
    from models.loss import ClapLoss

    net = ddp or model
    audio, text, scale = net(wav, ids, mask)
    loss, _ = ClapLoss()(audio, text, scale)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def main(bert_dir, out_path):
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model = build_model(bert_dir)
    for name, p in model.named_parameters():
        if name.startswith("audio_encoder.base.fc_audioset") or ".pooler." in name:
            p.requires_grad_(False)  # unused by the loss, as in the recipe
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    wav, ids, mask = global_batch()
    per = wav.shape[0] // world
    part = slice(rank * per, (rank + 1) * per)
    loss, grads = loss_and_grads(model, wav[part], ids[part], mask[part], ddp)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out_path)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
