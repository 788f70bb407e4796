"""Data: audio I/O, the one clip dataset, CSV manifests, corpus and zero-shot preparers, the toy world.

May import ``models`` (the only package below it); today it imports nothing
else of the project. Every package above reads audio and manifests through it.

- :mod:`dataset.audio`: reading, resampling, the one folder walker;
  :mod:`dataset.shards`: audio in webdataset tar shards (member paths ``<shard>.tar#<member>``,
  shard lists, random access), :mod:`dataset.shard_index`: their resumable listing;
  :mod:`dataset.clips`: the one clip dataset (tiling, cropping, chunking, masking);
- :mod:`dataset.manifest`: CSV manifests (real CSV quoting), atomic writes, file keys;
- :mod:`dataset.corpora`: one reader per caption corpus, composed by
  :mod:`dataset.prepare_insper` (the teacher's caption manifests);
- :mod:`dataset.prepare_zeroshot` (with :mod:`dataset.vggsound`, :mod:`dataset.tau19`)
  and :mod:`dataset.labels`: the zero-shot sets, their class lists and prompts;
- :mod:`dataset.pipelines`: SpeechBrain data pipelines; :mod:`dataset.overfit`:
  the paper code's ``overfit_size`` mode;
- :mod:`dataset.toy`: the synthetic toy world in the real layouts.
"""
