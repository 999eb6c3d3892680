"""Outputs: tag servers that read the TagStore (Modbus TCP, OPC UA); they never touch inputs."""

import asyncio


async def cancel_tasks(tasks: list[asyncio.Task]) -> None:
    """Cancel an output's background tasks and wait until each has ended."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except asyncio.CancelledError:
            pass
    tasks.clear()
