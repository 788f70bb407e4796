"""Third-party start-up messages that say nothing about the run, kept from the user; every other warning shows.

:data:`NOISE` lists each such message with the logger that emits it. At
present one: SpeechBrain's ``speechbrain.utils.train_logger`` logs
"torchvision is not available - cannot save figures" when it is imported;
the figures are those of its ``ProgressSampleLogger`` (speech synthesis),
which no recipe uses, and torchvision is not a dependency of the project.

:func:`quiet_third_party` adds a filter for exactly these messages to those
loggers. The ``experiment`` package calls it when it is imported, before any
recipe imports the modules that emit them (the message is logged once, at
import). Warnings of the run itself, ours or SpeechBrain's, are untouched.
"""

import logging

__all__ = ["NOISE", "quiet_third_party"]

#: Logger name -> the start of each message of it that is dropped.
NOISE = {
    "speechbrain.utils.train_logger": ("torchvision is not available",),
}


class _DropNoise(logging.Filter):
    """Drops the records whose message starts with one of ``starts``."""

    def __init__(self, starts):
        super().__init__()
        self.starts = starts

    def filter(self, record):
        return not record.getMessage().startswith(self.starts)


def quiet_third_party():
    """Adds the filters of :data:`NOISE` to their loggers (once: calling it again changes nothing).

    Example
    -------
    >>> quiet_third_party()
    >>> record = logging.makeLogRecord({"msg": "torchvision is not available - cannot save figures"})
    >>> logging.getLogger("speechbrain.utils.train_logger").filter(record)
    False
    """
    for name, starts in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise(starts))
