"""The licence notice kerasmorph owes its users: the Stable Diffusion weights', once per process.

KerasCV prints the weights' licence from `StableDiffusion.__init__`;
kerasmorph builds KerasCV's components itself (`kerasmorph.models.build`), so
it shows the preset's notice (`Preset.licence`) when it loads real weights:
one warning on the `kerasmorph.licences` logger (stderr unless logging is
configured otherwise), the first time in a process each notice applies.
Random-weight and toy presets (`tiny`, `shapes`) have no notice.

Stdlib only: importing it is cheap.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# The notices already shown in this process.
_shown: set[str] = set()


def show_licence_notice(notice: str) -> bool:
    """Shows `notice` as a warning the first time this process sees it.

    Args:
        notice: a weights' licence line, e.g. `Preset.licence`; "" shows nothing.

    Returns:
        Whether it was shown now (`False` when empty or already shown).
    """
    if not notice or notice in _shown:
        return False
    _shown.add(notice)
    logger.warning("%s. By using these weights you accept the licence's terms.", notice)
    return True
