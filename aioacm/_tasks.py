"""Helpers for the background tasks the client owns."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` and wait until it has finished.

    The task's own CancelledError is absorbed here (we are the code that cancelled it); a
    cancellation of the caller still propagates. An exception the task died with is logged, so
    it is never "never retrieved".
    """
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        logger.error("task %s had failed", task.get_name(), exc_info=task.exception())
