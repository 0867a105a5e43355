import gc

from spillguard.core.heap import settle


class Node:
    def __init__(self) -> None:
        self.me = self


def test_settle_collects_garbage_then_exempts_the_survivors() -> None:
    gc.unfreeze()
    Node()  # a reference cycle, garbage once this line ends
    kept = [Node() for _ in range(100)]
    try:
        settle()
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)
        # What is frozen is not walked: a full collection finds nothing among it.
        assert gc.collect() == 0
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
