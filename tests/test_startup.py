"""What a recipe prints before it runs: no third-party start-up noise, every real warning.

Third-party messages that say nothing about the run (SpeechBrain's
"torchvision is not available", transformers 5's "Loading weights" bar) are
kept from the user (:mod:`experiment.quiet`, :func:`models.text_encoder.build_text_model`);
warnings of the run itself, ours or the libraries', still reach stderr.
"""

import logging
import os
import subprocess
import sys

from conftest import REPO


def test_third_party_noise_is_filtered_and_other_records_pass(caplog):
    """The filter drops exactly the noisy message: another record of the same logger, and SpeechBrain's others, pass."""
    import experiment  # noqa: F401  (installs the filter)

    noisy = logging.getLogger("speechbrain.utils.train_logger")
    with caplog.at_level(logging.INFO):
        noisy.warning("torchvision is not available - cannot save figures")
        noisy.warning("a real warning of the train logger")
        logging.getLogger("speechbrain.core").warning("a real warning of the run")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a real warning of the train logger", "a real warning of the run"]


def test_a_run_shows_its_warnings_without_the_noise(tmp_path):
    """A real start-up (setup, the warnings of the run, then an error on its data): our warnings reach stderr, the
    noise SpeechBrain's train_logger module logs on import (this recipe imports it) does not."""
    meta = tmp_path / "ESC-50" / "meta"
    meta.mkdir(parents=True)
    (meta / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n")
    proc = subprocess.run(
        [sys.executable, "recipes/microsoft_zeroshot.py", "hparams/toy/microsoft_zeroshot.yaml",
         f"--data_folder={tmp_path / 'ESC-50'}", f"--output_base={tmp_path / 'out'}", "--precision=fp16",
         "--emb_norm_type=l2", "--noprogressbar"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode != 0 and "no rows in" in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert "WARNING: --auto_mix_prec / --precision=fp16 need a CUDA GPU" in proc.stderr
    assert "WARNING: --emb_norm_type (a key of the paper code's YAML) is ignored" in proc.stderr
    assert "torchvision is not available" not in proc.stderr + proc.stdout


def test_pretrained_text_model_loads_without_the_weights_bar(tmp_path, capfd):
    """transformers 5 draws a "Loading weights" bar for every from_pretrained; ours loads without it."""
    from transformers import BertConfig, BertModel

    from models.text_encoder import build_text_model

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    full = BertModel(config, add_pooling_layer=False)
    full.save_pretrained(tmp_path)
    capfd.readouterr()
    model = build_text_model(str(tmp_path))
    err = capfd.readouterr().err
    assert model.config.hidden_size == 16
    assert "Loading weights" not in err
