"""A bounded producer/consumer: reading and decoding run in a thread while the model infers."""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Callable, TypeVar

T = TypeVar("T")

_DONE = object()
READER_NICENESS = 10


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(produce: Callable[[], Iterable[T]], depth: int = 4) -> Iterator[T]:
    """Yield what `produce()` yields, computed ahead in a worker thread, at most `depth` items ahead.

    GDAL and numpy release the GIL while decoding, so the next batch is read while onnxruntime
    runs on the current one. An exception in the producer is raised here, in the consumer.
    Closing the generator early stops the producer.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        _lower_thread_priority()
        try:
            for item in produce():
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(exc))

    worker = threading.Thread(target=work, name="rsir-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=10)


def _lower_thread_priority() -> None:
    """Let inference threads win the cores: on Linux, niceness applies per thread.

    onnxruntime's workers meet at a barrier after each parallel section, so a reader that preempts
    one of them stalls them all; at a lower priority it runs in their idle moments instead.
    """
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICENESS)
