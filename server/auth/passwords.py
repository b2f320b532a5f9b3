"""bcrypt off the event loop, in a small thread pool, with constant-cost refusals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import bcrypt
from aiohttp import web

from server.settings import SETTINGS


def _yield_to_the_game() -> None:
    """bcrypt threads run at the lowest CPU priority: under load a login may wait, a bet should not.

    bcrypt releases the GIL while hashing, so these threads compete with the event loop (and the
    database) only for CPU time; on Linux a thread's nice value is its own.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class PasswordHasher:
    def __init__(self, cost: int, threads: int = 2) -> None:
        self.cost = cost
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="bcrypt", initializer=_yield_to_the_game
        )
        # A login for an unknown user checks against this, so it costs what a wrong password costs.
        self._decoy = bcrypt.hashpw(b"decoy-password", bcrypt.gensalt(cost))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(
            self._pool, lambda: bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.cost))
        )
        return hashed.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        loop = asyncio.get_running_loop()
        target = hashed.encode() if hashed else self._decoy
        matches = await loop.run_in_executor(self._pool, bcrypt.checkpw, password.encode(), target)
        return matches and hashed is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


PASSWORDS: Final = web.AppKey("passwords", PasswordHasher)


async def passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    hasher = PasswordHasher(app[SETTINGS].bcrypt_cost)
    app[PASSWORDS] = hasher
    yield
    hasher.close()
