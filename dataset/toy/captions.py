"""Captions of the toy world: templates with synonyms over the events' vocabulary.

Captions come from templates with synonyms (each event's ``canonical``
phrases, ``clauses`` and ``nouns`` in ``EVENTS``), and the zero-shot label
words occur in them, so prompts such as "this is a sound of church bells"
are meaningful. :func:`caption_events` recovers the events a caption names.
"""

import functools

from dataset.toy.events import EVENT_KEYS, EVENTS, SCENES

_SINGLE_TEMPLATES = ["{C}", "{C} {adv}", "the sound of {N}", "{N} can be heard {adv}",
                     "{N} is heard", "in this recording, {C}"]
_PAIR_TEMPLATES = ["{C1} while {C2}", "{C1} and {C2}", "{C1}, and {C2} in the background",
                   "{N1} and {N2} can be heard", "{N1} mixed with {N2}",
                   "the sound of {N1} together with {N2}", "{C1} as {C2}"]
_SCENE_TEMPLATES = ["{C1} {place}", "{C1} while {C2} {place}", "{C1} and {C2} {place}",
                    "{scene} with {N1} and {N2}", "ambience of {scene}, with {N1}",
                    "{N1} and {N2} {place}", "{place}, {C1}"]
_ADVERBS = ["nearby", "in the distance", "outside", "for a while", "close to the microphone",
            "over and over"]


def _sentence(text):
    """Clotho style: capitalised, one final period."""
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "."


def make_captions(events, scene, rng, count=5):
    """``count`` distinct template captions for a clip.

    One caption (at a random position) is canonical: it contains every target
    label of the clip's events (or the scene's label), so each label of the
    zero-shot sets is a phrase the caption corpus uses.

    Arguments
    ---------
    events : list of str
        Keys of ``EVENTS`` that sound in the clip (1-3).
    scene : str or None
        Key of ``SCENES`` if the clip is a scene mixture.
    rng : numpy.random.Generator
        Source of randomness.
    count : int
        Number of captions.

    Returns
    -------
    list of str

    Example
    -------
    >>> from dataset.toy.signals import stream
    >>> caps = make_captions(["dog", "rain"], None, stream(0, "doc"))
    >>> len(caps), len(set(caps)), any("dog bark" in c.lower() for c in caps)
    (5, 5, True)
    """
    def pick(options):
        return options[rng.integers(len(options))]

    def clause(e, canonical):
        return pick(EVENTS[e]["canonical"] if canonical else EVENTS[e]["clauses"] + EVENTS[e]["canonical"])

    def noun(e):
        return pick(EVENTS[e]["nouns"])

    canonical_slot = int(rng.integers(count))
    captions = []
    for _ in range(200 * count):
        canonical = len(captions) == canonical_slot
        mentioned = list(events)
        if len(mentioned) > 2:  # captions name at most two of a scene's events
            mentioned = [mentioned[i] for i in sorted(rng.choice(len(mentioned), 2, replace=False))]
        if rng.random() < 0.5 and len(mentioned) == 2:
            mentioned = mentioned[::-1]
        if scene is not None:
            info = SCENES[scene]
            # The canonical caption must name the place with the scene label.
            template = pick([t for t in _SCENE_TEMPLATES if "{place}" in t] if canonical else _SCENE_TEMPLATES)
            fields = {"C1": clause(mentioned[0], False), "C2": clause(mentioned[1], False),
                      "N1": noun(mentioned[0]), "N2": noun(mentioned[1]),
                      "place": info["places"][0] if canonical else pick(info["places"]),
                      "scene": pick(info["names"])}
        elif len(mentioned) == 1:
            e = mentioned[0]
            template = "{C}" if canonical else pick(_SINGLE_TEMPLATES)
            fields = {"C": clause(e, canonical), "N": noun(e), "adv": pick(_ADVERBS)}
        else:
            template = pick(_PAIR_TEMPLATES[:3] + [_PAIR_TEMPLATES[6]]) if canonical else pick(_PAIR_TEMPLATES)
            fields = {"C1": clause(mentioned[0], canonical), "C2": clause(mentioned[1], canonical),
                      "N1": noun(mentioned[0]), "N2": noun(mentioned[1])}
        text = _sentence(template.format(**fields))
        if text not in captions:
            captions.append(text)
            if len(captions) == count:
                return captions
    raise RuntimeError(f"could not draw {count} distinct captions for {events} / {scene}")


def caption_events(caption):
    """The events a toy caption names: keys of ``EVENTS`` whose phrases it contains.

    Captions are built from each event's clauses and nouns (see
    :func:`make_captions`), so a phrase match recovers them; the demo pipeline
    uses it to measure how often a curated pair's caption names an event of
    its clip.

    Example
    -------
    >>> caption_events("A dog barks while rain is falling.")
    ['dog', 'rain']
    >>> caption_events("Nothing to hear.")
    []
    """
    text = " ".join(caption.lower().replace(".", " ").replace(",", " ").split())
    return [e for e in EVENT_KEYS if any(_phrase_in(p, text) for p in _event_phrases(e))]


@functools.cache
def _event_phrases(event):
    info = EVENTS[event]
    return tuple(" ".join(p.lower().replace(",", " ").split())
                 for p in info["canonical"] + info["clauses"] + info["nouns"])


def _phrase_in(phrase, text):
    return f" {phrase} " in f" {text} "
