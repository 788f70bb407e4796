"""The recipes with an HTS-AT audio tower: the flags of hparams/toy/pipeline_htsat.yaml train, score and reload."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import REPO, check_ok, run_script
from experiment.checkpoints import checkpoint_dirs, find_checkpoint, model_file
from inference import ClapEmbedder

TRAIN = "recipes/microsoft_clap_train.py"
ZEROSHOT = "recipes/microsoft_zeroshot.py"

# It trains an HTS-AT teacher and scores it (minutes); tests/test_htsat.py checks the model in the fast tier.
pytestmark = pytest.mark.slow


def htsat_flags():
    """The architecture flags the HTS-AT toy pipeline gives every stage (its YAML, as the pipeline reads it)."""
    with open(os.path.join(REPO, "hparams", "toy", "pipeline_htsat.yaml"), encoding="utf-8") as f:
        return list(yaml.safe_load(f)["model_flags"])


def test_toy_htsat_teacher_trains_scores_and_reloads(toy_world, tmp_path):
    flags = htsat_flags()
    out = tmp_path / "runs"
    check_ok(run_script([TRAIN, "hparams/toy/microsoft_clap_train.yaml", f"--data_annot_folder={toy_world}",
                         f"--output_base={out}", "--experiment_name=htsat", "--number_of_epochs=1",
                         "--batch_size=16", "--subset_pct=0.5", "--noprogressbar"] + flags))
    save = out / "htsat" / "save"
    assert checkpoint_dirs(save)
    weights = torch.load(model_file(find_checkpoint(str(save), "latest")), map_location="cpu", weights_only=True)
    assert "audio_encoder.base.patch_embed.proj.weight" in weights  # an HTS-AT, not the YAML's CNN14

    # Zero-shot of that run with the same flags: every clip scored.
    check_ok(run_script([ZEROSHOT, "hparams/toy/microsoft_zeroshot.yaml", "--dataset=esc50",
                         f"--data_folder={toy_world}/ESC-50", f"--ssl_checkpoints_dir={save}",
                         "--ssl_select=latest", f"--output_base={out}", "--experiment_name=zs",
                         "--noprogressbar"] + flags))
    with open(out / "zs" / "zeroshot_results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["clips_scored"] > 0 and 0.0 <= results["top1"] <= 1.0

    # The API rebuilds the architecture from the run's hyperparams.yaml (audio_options given as a flag).
    embedder = ClapEmbedder.from_experiment(str(out / "htsat"), select="latest")
    base = embedder.model.audio_encoder.base
    assert type(base).__name__ == "HTSAT" and base.num_features == 128
    loaded = embedder.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items() if k in loaded)

    # A long file (3 x the 4-s window) embeds to the same vector twice (deterministic chunks).
    wav = tmp_path / "long.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 12).astype("float32"), 16000)
    first, second = embedder.embed_audio([str(wav)]), embedder.embed_audio([str(wav)])
    assert np.array_equal(first, second)
