"""The node's byte budget (chunkstore.net.budget)."""

import trio
import trio.testing

from chunkstore.net.budget import ByteBudget, Reservation


def test_fifo_and_capped_at_the_limit():
    async def main():
        budget = ByteBudget(100)
        order = []
        assert await budget.acquire(500) == 100  # capped: a frame larger than the budget still goes

        async def waiter(name, n):
            got = await budget.acquire(n)
            order.append((name, got))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "big", 80)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter, "small", 10)  # fits after "big", but waits its turn
            await trio.testing.wait_all_tasks_blocked()
            assert order == []
            budget.release(100)
        assert order == [("big", 80), ("small", 10)] and budget.used == 90

    trio.run(main)


def test_reservation_gives_back_before_it_waits():
    """resize() releases what it holds first, so two requests that each hold part of the
    budget never wait for each other; release() is idempotent."""
    async def main():
        budget = ByteBudget(100)
        a, b = Reservation(budget), Reservation(budget)
        await a.resize(60)
        await b.resize(40)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.resize, 100)  # needs b's share: waits, holding nothing
            await trio.testing.wait_all_tasks_blocked()
            assert (a.bytes, budget.used) == (0, 40)
            b.release()
        assert (a.bytes, b.bytes, budget.used) == (100, 0, 100)
        a.release()
        a.release()
        assert budget.used == 0

    trio.run(main)
