"""Batch encoders: a batch of clips or texts through the model, to float32 unit rows.

- :func:`audio_batch_encoder`: a batch of :class:`dataset.clips.AudioClips`
  (chunks averaged per clip);
- :func:`text_batch_encoder` over a :class:`TextItems` dataset; and
  :func:`encode_texts`, a small list of texts embedded in memory.

Each ``encode(batch)`` returns ``(float32 [B, d] rows, ok [B] bool, errors [B] str)``,
what :func:`embeddings.shards.embed_items` stores.
"""

from __future__ import annotations

import numpy as np
import torch

from models.precision import autocast
from models.text_encoder import tokenize

__all__ = ["audio_batch_encoder", "TextItems", "text_batch_encoder", "collate_texts", "encode_texts"]


def audio_batch_encoder(model, device, chunk_batch, precision="fp32"):
    """``batch -> float32 [B, d]`` unit rows: chunk embeddings averaged per clip, then normalised.

    The model runs at ``precision`` (:func:`models.precision.autocast`); the rows are float32.
    """

    def encode(batch):
        wav = batch["wav"]
        with autocast(precision, device):
            parts = [model.encode_audio(wav[s : s + chunk_batch].to(device)).float().cpu()
                     for s in range(0, wav.shape[0], chunk_batch)]
        chunk_emb = torch.cat(parts)
        counts = batch["counts"]
        if int(counts.max()) == 1:
            emb = chunk_emb
        else:
            owner = torch.repeat_interleave(torch.arange(counts.numel()), counts)
            emb = torch.zeros(counts.numel(), chunk_emb.shape[1]).index_add_(0, owner, chunk_emb)
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb.numpy(), batch["ok"].numpy(), batch["error"]

    return encode


class TextItems(torch.utils.data.Dataset):
    """A list of texts as a dataset (one text an item)."""

    def __init__(self, texts):
        self.texts = list(texts)

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, index):
        return self.texts[index]


def text_batch_encoder(model, tokenizer, max_length, device, precision="fp32"):
    """``texts -> float32 [B, d]`` unit rows, the model at ``precision`` (:func:`models.precision.autocast`)."""

    def encode(texts):
        tokens = {k: v.to(device) for k, v in tokenize(tokenizer, texts, max_length=max_length).items()}
        with autocast(precision, device):
            emb = model.encode_text(**tokens).float().cpu().numpy()
        return emb, np.ones(len(texts), dtype=bool), [""] * len(texts)

    return encode


def collate_texts(texts):
    """A batch of :class:`TextItems`: the list of its texts."""
    return list(texts)


def encode_texts(model, tokenizer, texts, batch_size=256, max_length=100, device="cpu", progress=False, desc="texts",
                 precision="fp32"):
    """Embeds a (small) list of texts in memory: float32 ``[len(texts), d]`` unit rows.

    Used for label prompts and the DS captions; fixed batches make it reproducible.
    The model runs at ``precision`` (:func:`models.precision.autocast`).
    """
    encode = text_batch_encoder(model, tokenizer, max_length, device, precision)
    out = []
    model.eval()
    batches = range(0, len(texts), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=desc, unit="batch", dynamic_ncols=True)
    with torch.inference_mode():
        for s in batches:
            out.append(encode(list(texts[s : s + batch_size]))[0])
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)
