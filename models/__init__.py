"""The torch modules of the CLAP models and their published weights: front ends, towers, CLAP, losses.

The bottom layer: imports nothing of the project (every other package may
import it).

- :mod:`models.frontend`: the log-mel front end (PANNs / torchlibrosa numerics);
- :mod:`models.cnn14`, :mod:`models.htsat` (its Swin stages: :mod:`models.swin`):
  the audio towers; :mod:`models.text_encoder`: the Hugging Face text towers;
  :mod:`models.projection`: the projection heads; :mod:`models.clap`: CLAP;
- :mod:`models.registry`: one entry per audio or text architecture;
  :mod:`models.factory` builds every CLAP from the YAML's keys, :mod:`models.presets`
  holds the published architectures (``--model=<name>``);
- :mod:`models.checkpoints` and :mod:`models.convert`: the published checkpoint
  files and layouts (PANNs, MS CLAP, LAION, Hugging Face) in ours;
- :mod:`models.loss`: the contrastive loss; :mod:`models.precision`: inference
  precision; :mod:`models.freeze`: frozen backbones.
"""
