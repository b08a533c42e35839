"""The hypothesis settings the mirror property tests share, and the variables that change them.

``SYNCWORKER_PROPERTY_EXAMPLES`` / ``SYNCWORKER_PROPERTY_STEPS`` set the size of a run (setting the
number of examples also turns on random seeds: CI's default run is derandomized and repeatable);
``SYNCWORKER_PROPERTY_SHRINK=0`` skips shrinking, which can take many minutes of real syncs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings


def property_settings() -> settings:
    shrink = os.environ.get("SYNCWORKER_PROPERTY_SHRINK", "1") == "1"
    return settings(
        max_examples=int(os.environ.get("SYNCWORKER_PROPERTY_EXAMPLES", "25")),
        stateful_step_count=int(os.environ.get("SYNCWORKER_PROPERTY_STEPS", "20")),
        deadline=None,
        derandomize="SYNCWORKER_PROPERTY_EXAMPLES" not in os.environ,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[p for p in Phase if p is not Phase.shrink or shrink],
    )
