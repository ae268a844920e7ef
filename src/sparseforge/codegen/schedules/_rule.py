"""Base class of the CPU schedule rules: target gating and failure isolation."""

from __future__ import annotations

import logging

from .. import _tvm

logger = logging.getLogger(__name__)


class CPURule(_tvm.dlight.ScheduleRule):
    """dlight rule for LLVM (CPU) targets.

    Subclasses implement :meth:`schedule` (return a ``Schedule`` or ``None``). A schedule
    primitive that fails part-way (an unexpected IR shape) makes the rule decline the function
    instead of aborting the whole build, so the next rule (ultimately the fallback) gets it.
    """

    def is_target_available(self, target) -> bool:
        return target.kind.name == "llvm"

    def apply(self, func, target, tunable):
        if not isinstance(func, _tvm.tirx.PrimFunc) or not self.is_target_available(target):
            return None
        try:
            return self.schedule(func, target)
        except (RuntimeError, ValueError) as err:  # ScheduleError, TVM InternalError: RuntimeError
            logger.debug("%s declined a function: %s", type(self).__name__, str(err).splitlines()[-1:])
            return None

    def schedule(self, func, target):
        raise NotImplementedError
