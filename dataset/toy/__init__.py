"""A deterministic synthetic "toy world" written in the real dataset layouts.

Public datasets and checkpoints cannot be downloaded on the build machines, so
this package writes a small world that the preparers, the tests and the
one-command demo pipeline consume exactly as they would the real data:

- ``clotho/``: a captioned corpus in the Clotho v2 layout (clean, dry audio);
- ``pairs.csv``: the development + validation pairs as ``ID,wav_path,caption``;
- ``unpaired/`` + ``unpaired_paths.txt``: an unpaired pool (AudioSet's role);
- ``ESC-50/``, ``UrbanSound8K/``, ``TUT2017/``: the three zero-shot sets;
- ``world.json``: class lists, counts and the recording-condition parameters.

Sounds are procedural events (a dog bark is a short harmonic burst with a
pitch drop, a siren a slow FM tone, ...). Every clip repeats its events'
patterns so that any 1-2 s window holds evidence of every event it is
labelled or captioned with, because training uses random 2 s crops. Captions
come from templates with synonyms, and the zero-shot label words occur in
them, so prompts such as "this is a sound of church bells" are meaningful.
Acoustic scenes (TUT) are mixtures of 2-3 characteristic events; some
captioned clips are such mixtures with the scene words in their captions.

The paper's question needs a domain shift: the captioned corpus is clean and
dry, while the unpaired pool and all three target sets share one "field
recording" condition (room reverb, brown noise + mains hum, band-limiting
tilt EQ). See ``CONDITION``.

Determinism: every random decision comes from a generator seeded by
``(seed, purpose, file key)`` (:func:`stream`), never from a shared stream,
so the bytes of a file do not depend on how many other files were drawn
before it (or on the number of worker processes). Rows are written in sorted
order and nothing records a time stamp: the same seed gives the same bytes.

Simplifications, all for speed: TUT clips are 4 s long (10 s in the real
set), Clotho clips 3-6 s (15-30 s); audio is synthesised at 16 kHz (the rate
the demo models listen at, so content stops at 8 kHz) and upsampled to each
file's rate; the reverb is circular (a tail running past the end of a clip
wraps to its start, as if the repeating sound had been going on before).
The unpaired pool is named like downloaded AudioSet clips (``Y<YouTube id>.wav``).

Modules (each imports only the ones above it):

- :mod:`~dataset.toy.signals`: seeded random streams and signal helpers;
- :mod:`~dataset.toy.events`: the sound-event synthesisers, ``EVENTS``,
  ``SCENES`` and the zero-shot class lists;
- :mod:`~dataset.toy.captions`: caption templates, :func:`make_captions`,
  :func:`caption_events`;
- :mod:`~dataset.toy.conditions`: the recording conditions (:func:`apply_condition`);
- :mod:`~dataset.toy.render`: clip rendering and WAV writing (:func:`render_clip`);
- :mod:`~dataset.toy.layouts`: the planning of each dataset and its metadata files;
- :mod:`~dataset.toy.world`: :data:`SIZES`, :func:`plan_world`,
  :func:`generate_toy_world` and the command line :func:`main`.

Usage
-----
``python -m dataset.toy OUT [--size tiny|demo] [--seed N] [--workers K]``
(the former ``python -m dataset.toy_world ...`` works too).

Example
-------
>>> plan = plan_world("/data/toy", "tiny", seed=0)
>>> len(plan["esc50"]["rows"]), plan["esc50"]["rows"][0]["category"] in ESC50_CLASSES
(100, True)
>>> caption_events("A dog barks while rain is falling.")
['dog', 'rain']
"""

from dataset.toy.captions import caption_events, make_captions
from dataset.toy.conditions import CLEAN_FLOOR_SNR_DB, CONDITION, apply_condition
from dataset.toy.events import (
    ESC10, ESC50_CLASSES, EVENT_KEYS, EVENTS, SCENE_KEYS, SCENES, TUT_SCENES, US8K_CLASSES, US8K_EVENT,
)
from dataset.toy.layouts import (
    CLOTHO_SECONDS, CLOTHO_SR, ESC50_SECONDS, ESC50_SR, TUT_SECONDS, TUT_SR, UNPAIRED_SECONDS, UNPAIRED_SR,
    US8K_SECONDS_MAX, US8K_SHORT_SECONDS, plan_clotho, plan_esc50, plan_tut, plan_unpaired, plan_us8k,
)
from dataset.toy.render import LEVEL_DBFS, SYNTH_SR, render_clip, write_clips
from dataset.toy.signals import stream
from dataset.toy.world import FORMAT_VERSION, SIZES, generate_toy_world, main, plan_world

__all__ = [
    "CLEAN_FLOOR_SNR_DB", "CLOTHO_SECONDS", "CLOTHO_SR", "CONDITION", "ESC10", "ESC50_CLASSES", "ESC50_SECONDS",
    "ESC50_SR", "EVENTS", "EVENT_KEYS", "FORMAT_VERSION", "LEVEL_DBFS", "SCENES", "SCENE_KEYS", "SIZES", "SYNTH_SR",
    "TUT_SCENES", "TUT_SECONDS", "TUT_SR", "UNPAIRED_SECONDS", "UNPAIRED_SR", "US8K_CLASSES", "US8K_EVENT",
    "US8K_SECONDS_MAX", "US8K_SHORT_SECONDS", "apply_condition", "caption_events", "generate_toy_world", "main",
    "make_captions", "plan_clotho", "plan_esc50", "plan_tut", "plan_unpaired", "plan_us8k", "plan_world",
    "render_clip", "stream", "write_clips",
]
