"""The background writer: order kept, the first failure stops the rest and reaches the caller, bounded queue."""

from __future__ import annotations

import threading

import pytest

from dbooth.util.background import BackgroundWriter


def test_writes_everything_in_order_before_close_returns(tmp_path):
    order = []
    with BackgroundWriter(depth=2) as writer:
        for i in range(10):
            writer.submit(lambda i=i: (order.append(i), (tmp_path / f"{i}.txt").write_text(str(i))))
    assert order == list(range(10))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.txt" for i in range(10))
    assert writer.written == 10 and writer.write_seconds > 0


def test_the_first_failure_stops_later_writes_and_is_raised_in_the_caller(tmp_path):
    gate = threading.Event()
    written = []

    def write(i):
        def run():
            gate.wait(5)
            if i == 2:
                raise OSError(28, "No space left on device")
            written.append(i)
        return run

    writer = BackgroundWriter(depth=8)
    for i in range(6):
        writer.submit(write(i))  # all queued before the first runs
    gate.set()
    with pytest.raises(OSError, match="No space"):
        writer.close()
    assert written == [0, 1]  # 3, 4 and 5 were skipped: no gap behind the files on disk
    assert writer.written == 2


def test_an_error_is_raised_at_the_next_submit(tmp_path):
    writer = BackgroundWriter(depth=1)
    failed = threading.Event()

    def boom():
        failed.set()
        raise OSError(13, "Permission denied")

    writer.submit(boom)
    failed.wait(5)
    # the worker may still be finishing the failed call: keep submitting until the error surfaces
    with pytest.raises(OSError, match="Permission denied"):
        for _ in range(1000):
            writer.submit(lambda: None)
            threading.Event().wait(0.001)
    writer.abandon()


def test_abandon_lets_queued_writes_finish_and_keeps_quiet(tmp_path):
    gate = threading.Event()
    done = []
    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter(depth=4) as writer:
            writer.submit(lambda: (gate.wait(5), done.append(0)))
            writer.submit(lambda: done.append(1))
            writer.submit(lambda: (_ for _ in ()).throw(OSError("late failure")))
            gate.set()
            raise KeyboardInterrupt  # the caller is failing: its own error wins, the writes already queued land
    assert done == [0, 1]


def test_a_full_queue_holds_the_caller_back(tmp_path):
    gate = threading.Event()
    writer = BackgroundWriter(depth=1)
    writer.submit(lambda: gate.wait(5))  # taken by the worker, which then blocks
    writer.submit(lambda: None)  # fills the queue once the worker has taken the first
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # no room: the caller waits for the writer
    gate.set()
    third.join(5)
    assert not third.is_alive()
    writer.close()
    assert writer.written == 3 and writer.wait_seconds > 0


def test_wait_drains_the_queue_and_the_writer_takes_more_after(tmp_path):
    """The checkpoint writer waits before each save: the worker ends, and the next submit starts another."""
    order = []
    writer = BackgroundWriter(depth=1, name="dbooth-test-writer")
    writer.submit(lambda: order.append(0))
    writer.wait()
    assert order == [0] and not any(t.name == "dbooth-test-writer" for t in threading.enumerate())
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.submit(lambda: order.append(1))  # a failure stops only the writes queued with it
    writer.wait()
    assert order == [0, 1] and writer.written == 2


def test_a_quiet_wait_drops_the_error():
    writer = BackgroundWriter(depth=1)
    writer.submit(lambda: (_ for _ in ()).throw(OSError("late failure")))
    writer.wait(quiet=True)
    writer.close()  # nothing left to raise
