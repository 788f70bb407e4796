"""The symmetric contrastive (CLIP/CLAP) loss and its distributed gather.

The loss is computed over the *global* batch: under DDP every rank gathers the
embeddings of all ranks with a gradient-preserving all-gather, so the loss and
the gradients equal those of one process holding the combined batch.
"""

import torch
import torch.nn.functional as F


def is_distributed():
    """True when a torch.distributed process group with more than one rank is active."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def gather_with_grad(x):
    """Concatenates ``x`` from every rank along dim 0, keeping gradients.

    ``torch.distributed.all_gather`` returns tensors detached from the graph,
    which would silently drop the gradient through the other ranks' rows;
    ``torch.distributed.nn.functional.all_gather`` backpropagates (its backward
    is a reduce-scatter). Without a process group this is the identity.

    Arguments
    ---------
    x : torch.Tensor
        Local tensor ``[B, ...]``; every rank must pass the same shape.

    Returns
    -------
    torch.Tensor
        ``[world_size * B, ...]``, rank 0's rows first.

    Example
    -------
    >>> gather_with_grad(torch.ones(2, 3)).shape
    torch.Size([2, 3])
    """
    if not is_distributed():
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x), dim=0)


def contrastive_loss(audio_emb, text_emb, logit_scale, targets_a2t=None, targets_t2a=None):
    """Symmetric cross-entropy between audio→text and text→audio similarity rows.

    Arguments
    ---------
    audio_emb, text_emb : torch.Tensor
        L2-normalised embeddings ``[N, D]``; row ``i`` of each is a pair.
    logit_scale : torch.Tensor or float
        Multiplier of the cosine similarities (already exponentiated and clamped).
    targets_a2t, targets_t2a : torch.Tensor, optional
        Target distributions ``[N, N]`` (rows sum to one) for the audio→text
        and text→audio rows; ``None`` means the identity (hard labels).

    Returns
    -------
    torch.Tensor
        Scalar loss: the mean of the two directions.

    Example
    -------
    >>> a = F.normalize(torch.randn(4, 8), dim=-1)
    >>> hard = contrastive_loss(a, a, 10.0)
    >>> soft = contrastive_loss(a, a, 10.0, torch.eye(4), torch.eye(4))
    >>> bool(torch.allclose(hard, soft))
    True
    """
    return contrastive_loss_from_logits(logit_scale * audio_emb @ text_emb.t(), targets_a2t, targets_t2a)


def contrastive_loss_from_logits(logits_a2t, targets_a2t=None, targets_t2a=None):
    """:func:`contrastive_loss` of given audio→text logits ``[N, N]`` (text→audio: their transpose).

    Example
    -------
    >>> a = F.normalize(torch.randn(4, 8), dim=-1)
    >>> bool(torch.equal(contrastive_loss_from_logits(10.0 * a @ a.t()), contrastive_loss(a, a, 10.0)))
    True
    """
    logits_t2a = logits_a2t.t()
    if targets_a2t is None and targets_t2a is None:
        labels = torch.arange(logits_a2t.shape[0], device=logits_a2t.device)
        return 0.5 * (F.cross_entropy(logits_a2t, labels) + F.cross_entropy(logits_t2a, labels))
    n = logits_a2t.shape[0]
    eye = torch.eye(n, device=logits_a2t.device, dtype=logits_a2t.dtype)
    targets_a2t = eye if targets_a2t is None else targets_a2t
    targets_t2a = eye if targets_t2a is None else targets_t2a
    loss_a2t = -(targets_a2t * F.log_softmax(logits_a2t, dim=-1)).sum(-1).mean()
    loss_t2a = -(targets_t2a * F.log_softmax(logits_t2a, dim=-1)).sum(-1).mean()
    return 0.5 * (loss_a2t + loss_t2a)


def soft_targets(teacher_emb, beta):
    """SoftCLAP targets ``(1-β)·I + β·P`` from a frozen teacher's within-modality similarities.

    ``P`` is the teacher's cosine matrix of the batch with negative cosines
    set to zero and each row divided by its sum, so every target row is a
    probability distribution (it sums to one). The teacher's embeddings are
    unit-norm, so the diagonal of the cosine matrix is 1 and no row sum is
    zero: negative similarities can neither produce negative "probabilities"
    nor a division by zero (NaN). With ``β = 0`` the targets are the identity.

    Arguments
    ---------
    teacher_emb : torch.Tensor
        L2-normalised teacher embeddings ``[N, D]`` of one modality (audio
        for the audio→text rows, text for the text→audio rows).
    beta : float
        Weight of the teacher's similarities, in [0, 1].

    Returns
    -------
    torch.Tensor
        ``[N, N]`` target distributions.

    Example
    -------
    >>> e = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]), dim=-1)
    >>> t = soft_targets(e, 0.5)
    >>> [round(x, 4) for x in t[0].tolist()], round(float(t.sum(-1).min()), 6)
    ([0.7929, 0.2071, 0.0], 1.0)
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"softclap_beta must be in [0, 1], got {beta}")
    sims = (teacher_emb @ teacher_emb.t()).clamp(min=0.0)
    # The diagonal may be a hair below 1 in low precision; the row sums stay >= ~1.
    dist = sims / sims.sum(dim=-1, keepdim=True).clamp(min=1e-6)
    eye = torch.eye(teacher_emb.shape[0], device=teacher_emb.device, dtype=dist.dtype)
    return (1.0 - beta) * eye + beta * dist


def paper_soft_targets(teacher_emb, beta):
    """The paper code's SoftCLAP targets ``(1-β)·I + β·S``, ``S`` the teacher's raw cosine matrix.

    As in the original ``losses.SoftCLAPLoss``: rows are not normalised (a
    row sums to ``1 + β·Σ_{j≠i} s_ij``) and negative cosines stay negative;
    :func:`kl_div_pytorch110` then leaves entries ``<= 0`` out, as the
    PyTorch 1.10 the original pinned did.

    Example
    -------
    >>> e = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]), dim=-1)
    >>> [round(x, 4) for x in paper_soft_targets(e, 0.5)[0].tolist()]
    [1.0, 0.3536, -0.5]
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"softclap_beta must be in [0, 1], got {beta}")
    sims = teacher_emb @ teacher_emb.t()
    eye = torch.eye(teacher_emb.shape[0], device=teacher_emb.device, dtype=sims.dtype)
    return (1.0 - beta) * eye + beta * sims


def kl_div_pytorch110(log_probs, targets):
    """``KLDivLoss(reduction="batchmean")`` as PyTorch 1.10 computed it: entries with a target ``<= 0`` add 0.

    ``Σ_{t_ij > 0} t_ij (log t_ij - log_probs_ij) / N``. Newer PyTorch
    evaluates ``xlogy(t, t)`` everywhere, which is NaN for a negative target:
    the paper code's SoftCLAP targets have one wherever the teacher's cosine
    is negative.

    Example
    -------
    >>> log_p = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    >>> round(float(kl_div_pytorch110(log_p, torch.tensor([[1.0, 0.5, -0.2]]))), 6)  # ln 2 + 0.5 ln 2
    1.039721
    """
    positive = targets > 0
    safe = torch.where(positive, targets, torch.ones_like(targets))
    terms = torch.where(positive, targets * (torch.log(safe) - log_probs), torch.zeros_like(log_probs))
    return terms.sum() / log_probs.shape[0]


#: ``softclap_targets`` values: the paper code's targets and KL (default of the paper's YAMLs), or ours.
SOFTCLAP_TARGETS = ("paper", "normalized")

#: ``logit_clamp`` values: what ``max_logit_scale`` bounds. ``"logits"``: each scaled cosine
#: (the paper code's ``clamp(exp(logit_scale) * cos, max=100)``, default of the paper's YAMLs);
#: ``"scale"``: the exponentiated temperature (CLIP's, ours).
LOGIT_CLAMPS = ("logits", "scale")


def scaled_logits(audio_emb, text_emb, logit_scale, max_logit_scale=100.0, logit_clamp="scale"):
    """Audio→text logits ``[N, N]``: the cosines times the temperature, bounded as ``logit_clamp`` says.

    - ``"scale"``: ``min(s, M) · cos``. Above ``M`` the scale is frozen at
      ``M`` (no gradient reaches ``logit_scale``) and every logit is in ``[-M, M]``.
    - ``"logits"``: ``min(s · cos, M)`` element-wise, as the paper code. The
      unclamped logits (the negatives, small cosines) keep the full scale and
      carry its gradient; only logits above ``M`` are cut (and pass no gradient).

    Both are the same while ``s <= M`` (``s`` starts at 1/0.07 = 14.3).

    Arguments
    ---------
    audio_emb, text_emb : torch.Tensor
        L2-normalised ``[N, D]``.
    logit_scale : torch.Tensor or float
        The exponentiated temperature ``s = exp(model.logit_scale)``.
    max_logit_scale : float
        ``M`` (100 in CLIP, MS CLAP and the paper code).
    logit_clamp : str
        ``"logits"`` or ``"scale"`` (:data:`LOGIT_CLAMPS`).

    Example
    -------
    >>> cos = torch.tensor([[0.75, 0.5], [0.25, 0.75]])  # audio_emb @ text_emb.t()
    >>> scaled_logits(cos, torch.eye(2), torch.tensor(160.0), logit_clamp="logits").tolist()
    [[100.0, 80.0], [40.0, 100.0]]
    >>> scaled_logits(cos, torch.eye(2), torch.tensor(160.0), logit_clamp="scale").tolist()
    [[75.0, 50.0], [25.0, 75.0]]
    """
    if logit_clamp == "scale":
        return torch.clamp(logit_scale, max=max_logit_scale) * audio_emb @ text_emb.t()
    if logit_clamp == "logits":
        return torch.clamp(logit_scale * audio_emb @ text_emb.t(), max=max_logit_scale)
    raise ValueError(f"logit_clamp must be one of {', '.join(LOGIT_CLAMPS)}, got {logit_clamp!r}")


class ClapLoss(torch.nn.Module):
    """Contrastive loss over the global (all-rank) batch, with invalid rows removed.

    Arguments
    ---------
    max_logit_scale : float
        The bound (100 in CLIP, MS CLAP and the paper code).
    logit_clamp : str
        What it bounds (:func:`scaled_logits`): ``"scale"``, the exponentiated
        temperature (so the logits are in ``±max_logit_scale``), or
        ``"logits"``, each scaled cosine from above (the paper code's).

    Example
    -------
    >>> loss_fn = ClapLoss()
    >>> a = F.normalize(torch.randn(4, 8), dim=-1)
    >>> t = F.normalize(torch.randn(4, 8), dim=-1)
    >>> loss, logits = loss_fn(a, t, torch.tensor(14.3))
    >>> logits.shape
    torch.Size([4, 4])
    """

    def __init__(self, max_logit_scale=100.0, logit_clamp="scale"):
        super().__init__()
        if logit_clamp not in LOGIT_CLAMPS:
            raise ValueError(f"logit_clamp must be one of {', '.join(LOGIT_CLAMPS)}, got {logit_clamp!r}")
        self.max_logit_scale = max_logit_scale
        self.logit_clamp = logit_clamp

    def gather(self, audio_emb, text_emb, valid=None, gather=True):
        """Gathers embeddings (and the validity mask) from all ranks and drops invalid rows."""
        collect = gather_with_grad if gather else (lambda x: x)
        audio_all = collect(audio_emb)
        text_all = collect(text_emb)
        if valid is not None:
            valid_all = collect(valid.to(torch.float32)) > 0.5
            if not bool(valid_all.all()):
                audio_all, text_all = audio_all[valid_all], text_all[valid_all]
        return audio_all, text_all

    def forward(self, audio_emb, text_emb, logit_scale, valid=None, gather=True):
        """Returns ``(loss, scaled audio→text logits)`` of the global batch.

        Arguments
        ---------
        audio_emb, text_emb : torch.Tensor
            This rank's L2-normalised embeddings ``[B, D]``; row ``i`` of each is a pair.
        logit_scale : torch.Tensor
            The model's exponentiated temperature (bounded here, see ``logit_clamp``).
        valid : torch.Tensor, optional
            Bool ``[B]``: rows whose audio could be read; the others are left
            out of the loss on every rank.
        gather : bool
            False keeps the loss local (validation, where every rank sees the whole set).

        Returns
        -------
        loss : torch.Tensor
            Scalar.
        logits : torch.Tensor
            ``[N, N]`` scaled audio→text similarities of the kept rows.
        """
        audio_all, text_all = self.gather(audio_emb, text_emb, valid, gather)
        return self.contrast(audio_emb, text_emb, logit_scale, audio_all, text_all)

    def contrast(self, audio_emb, text_emb, logit_scale, audio_all, text_all, targets_a2t=None, targets_t2a=None):
        """The loss of gathered rows (``*_all``) with optional target distributions (None: the identity).

        Computed in (at least) float32 even under bf16/fp16 autocast: logits
        of up to ``max_logit_scale`` rounded to 8 mantissa bits would be off
        by several tenths, and the loss is a small N×N computation.
        """
        if audio_all.shape[0] == 0:
            # A batch whose audio was all unreadable: a zero loss that still
            # touches the graph, so DDP ranks stay in step.
            zero = 0.0 * (audio_emb.sum() + text_emb.sum() + logit_scale)
            return zero, audio_all @ text_all.t()
        dtype = torch.promote_types(audio_all.dtype, torch.float32)
        with torch.autocast(device_type=audio_all.device.type, enabled=False):
            audio_all, text_all = audio_all.to(dtype), text_all.to(dtype)
            logits = scaled_logits(audio_all, text_all, logit_scale.to(dtype), self.max_logit_scale, self.logit_clamp)
            return contrastive_loss_from_logits(logits, targets_a2t, targets_t2a), logits


class SoftClapLoss(ClapLoss):
    """SoftCLAP: the CLAP loss whose targets are softened by a frozen teacher.

    Two definitions, chosen by ``targets`` (``softclap_targets`` in the YAMLs):

    - ``"paper"``: the paper code's. Targets ``(1-β)·I + β·S``
      (:func:`paper_soft_targets`, rows not normalised, negative cosines
      kept), loss ``KLDivLoss(reduction="batchmean")`` of the log-softmax of
      each direction's logits with PyTorch 1.10's treatment of targets
      ``<= 0`` (:func:`kl_div_pytorch110`), averaged over the two directions.
    - ``"normalized"``: ours. Negative cosines clamped to zero and each row of
      the teacher's matrix normalised before mixing (:func:`soft_targets`),
      so every target row is a distribution, and the loss is its cross-entropy.

    Both are finite for any teacher (a negative cosine can produce no NaN)
    and differ from each other only through the targets and a constant
    (the targets' own entropy term of the KL, which has no gradient).

    Arguments
    ---------
    beta : float
        Weight of the teacher's within-modality similarities (``softclap_beta``), in [0, 1].
    max_logit_scale, logit_clamp
        As for :class:`ClapLoss`.
    targets : str
        ``"paper"`` or ``"normalized"`` (:data:`SOFTCLAP_TARGETS`).

    Example
    -------
    >>> a = F.normalize(torch.randn(4, 8), dim=-1)
    >>> t = F.normalize(torch.randn(4, 8), dim=-1)
    >>> plain, _ = ClapLoss()(a, t, torch.tensor(10.0))
    >>> soft, _ = SoftClapLoss(beta=0.3)(a, t, torch.tensor(10.0), teacher_audio=a, teacher_text=t)
    >>> bool(torch.equal(plain, SoftClapLoss(beta=0.0)(a, t, torch.tensor(10.0), teacher_audio=a, teacher_text=t)[0]))
    True
    >>> bool(torch.isclose(plain, soft))
    False
    """

    def __init__(self, beta=0.3, max_logit_scale=100.0, targets="normalized", logit_clamp="scale"):
        super().__init__(max_logit_scale, logit_clamp)
        beta = float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"softclap_beta must be in [0, 1], got {beta}")
        if targets not in SOFTCLAP_TARGETS:
            raise ValueError(f"softclap_targets must be one of {', '.join(SOFTCLAP_TARGETS)}, got {targets!r}")
        self.beta = beta
        self.targets = targets

    def forward(self, audio_emb, text_emb, logit_scale, valid=None, gather=True, teacher_audio=None,
                teacher_text=None):
        """Returns ``(loss, scaled audio→text logits)``, as :meth:`ClapLoss.forward`.

        ``teacher_audio`` and ``teacher_text`` are the frozen teacher's
        embeddings of the same rows. Without them (validation), or with
        ``beta = 0``, the loss is the plain CLAP loss, computed exactly as by
        :class:`ClapLoss`.
        """
        if teacher_audio is None or teacher_text is None or self.beta == 0:
            return super().forward(audio_emb, text_emb, logit_scale, valid=valid, gather=gather)
        audio_all, text_all = self.gather(audio_emb, text_emb, valid, gather)
        teacher_audio, teacher_text = self.gather(teacher_audio, teacher_text, valid, gather)
        # At least float32, autocast off: the targets of a half-precision teacher would be off by ~1e-2.
        dtype = torch.promote_types(teacher_audio.dtype, torch.float32)
        with torch.autocast(device_type=teacher_audio.device.type, enabled=False):
            teacher_audio, teacher_text = teacher_audio.to(dtype), teacher_text.to(dtype)
            if self.targets == "normalized":
                return self.contrast(audio_emb, text_emb, logit_scale, audio_all, text_all,
                                     soft_targets(teacher_audio, self.beta), soft_targets(teacher_text, self.beta))
            # The paper's KL: the cross-entropy of the positive part of the targets, plus their
            # Σ t·log t (a constant), each over the batch; entries <= 0 add nothing (PyTorch 1.10).
            kept = [paper_soft_targets(e, self.beta).clamp(min=0.0) for e in (teacher_audio, teacher_text)]
            loss, logits = self.contrast(audio_emb, text_emb, logit_scale, audio_all, text_all, *kept)
            if audio_all.shape[0]:
                loss = loss + 0.5 * sum(float(torch.special.xlogy(t, t).sum()) / t.shape[0] for t in kept)
            return loss, logits
