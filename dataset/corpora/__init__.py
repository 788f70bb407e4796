"""The caption corpora of the teacher, one reader each: ``(rows, n_missing)`` from the layout users unpack.

Every reader returns caption rows ``ID, wav_path, caption, source, source_id``
(each with its audio located on disk) and the number of captions whose audio
was not found; :func:`dataset.prepare_insper.prepare_insper` composes them.
Imports ``dataset.audio`` and ``dataset.manifest`` only.

- :mod:`dataset.corpora.clotho`, :mod:`dataset.corpora.audiocaps`,
  :mod:`dataset.corpora.macs`, :mod:`dataset.corpora.fsd50k`: the published corpora;
- :mod:`dataset.corpora.user_csv`: a user's ``ID,wav_path,caption`` CSV;
- :mod:`dataset.corpora.paper_index`: the paper code's index files;
- :mod:`dataset.corpora.cleaning`: the paper code's caption clean-up;
- :mod:`dataset.corpora.files`: the shared lookup of audio and metadata files.
"""
