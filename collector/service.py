"""The collector's loop: drain the ring buffer, batch, publish, heartbeat.

It reads two header fields of each record (kind and pid) to follow process
lifetimes; it never looks at captured bytes.

Every process whose records it sends is announced (PROCESS, with its cgroup
and namespace pid) before the first EVENTS message that carries them: in
targets mode by the tracker as the process is selected, when tracing
everything at the process's first connect (once per process image: again
after an exec, forgotten at exit).
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from s3slower.collector import processes
from s3slower.collector.libraries import LibraryFinder
from s3slower.collector.opaque_exit import OpenOpaque
from s3slower.collector.probes import Probes
from s3slower.collector.publisher import Publisher
from s3slower.collector.tlsstack import StackGuesser
from s3slower.collector.tracker import Tracker
from s3slower.common.events import (KIND_DATA, Kind, MalformedEvent, decode_event, peek_kind,
                                    peek_pid)
from s3slower.common.losses import Loss, heartbeat_maps, summary
from s3slower.common.protocol import MsgKind
from s3slower.common.targets import ProcInfo, Selection, Target

__all__ = ["Collector", "CollectorStats", "Tracker"]

BATCH_MAX_EVENTS = 1024          # one message carries at most this many records
BATCH_MAX_BYTES = 1024 * 1024    # ... or this many bytes (well under MAX_MESSAGE_BYTES)
# After a small drain, records gather this long before they go out as one
# message (light traffic: at most 20 messages a second, a record waits at
# most ~50 ms).  Each message costs both halves far more than its records do
# (their code and data are cold after the client's own work): at 1,400 boto3
# requests a second, 50 ms instead of 20 took ~20-35 % off the CPU both
# halves spend a request.  Meanwhile the ring is drained every
# GATHER_CHECK_NS into the message being gathered, and what its records say
# of processes (exec, exit, a first connect: /proc is read while the process
# lives) is handled at once, so the ring never holds more than ~10 ms of
# records (10,000 connections opening at once filled the 8 MiB ring in 20 ms
# once).  A drain that found records gathers at once: more are coming; one
# that found none waits on the ring first.  After a drain that sent
# GATHER_BELOW records or more (those gathered count) traffic is busy and the
# ring is drained again at once.
GATHER_NS = 50_000_000
GATHER_CHECK_NS = 10_000_000
GATHER_BELOW = 256
HEARTBEAT_NS = 1_000_000_000
# Processes announced when tracing everything, forgotten at their EXIT; the
# kernel reports the EXIT of at most this many (its seen_pids map), so beyond
# it the set starts afresh (a process announced twice is harmless).
MAX_ANNOUNCED = 65536


@dataclass(frozen=True)
class CollectorStats:
    events: int
    batches: int
    traced_processes: int
    attached_libraries: int
    execs: int
    exits: int
    probes_attached: int      # uprobes in place (per pid in targets mode)
    attach_errors: int
    detach_errors: int
    elf_parse_errors: int     # files that looked like ELF but did not parse


class Collector:
    def __init__(self, probes_factory: Callable[[Callable[[bytes], None]], Probes],
                 publisher: Publisher, selection: Selection,
                 clock: Callable[[], int] = time.monotonic_ns,
                 finder: Optional[LibraryFinder] = None):
        self.publisher = publisher
        self.clock = clock
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._lifecycle: list[tuple[int, int, bytes]] = []   # kind, pid, record
        self._mmaps: set[int] = set()   # pids that mapped code since the last loop
        self._events = 0
        self._batches = 0
        self._execs = 0
        self._exits = 0
        self._connected: list[int] = []       # pids that connected since the last batch
        self._announced: set[int] = set()
        self._announce_connects = selection.trace_all
        self._stacks = StackGuesser()
        finder = finder or LibraryFinder()
        # The BPF compile (C, without the GIL) and inspecting the files the
        # host's processes map (Python) take the same second: side by side.
        warm = threading.Thread(target=finder.warm, name="inspect", daemon=True)
        warm.start()
        try:
            self.probes = probes_factory(self._on_record)
        finally:
            warm.join()
        self.tracker = Tracker(self.probes, selection, self._announce, finder)
        self._opaque = OpenOpaque(lambda pid, fd, conn: self.probes.take_opaque(pid, fd, conn))

    # Called from inside ring_buffer_poll for every record: keep it short.
    def _on_record(self, raw: bytes) -> None:
        kind = peek_kind(raw)
        if kind != KIND_DATA:
            if kind == Kind.MMAP:       # for the tracker only
                self._mmaps.add(peek_pid(raw))
                return
            self._not_data(kind, raw)
        self._batch.append(raw)
        self._batch_bytes += len(raw)
        if len(self._batch) >= BATCH_MAX_EVENTS or self._batch_bytes >= BATCH_MAX_BYTES:
            self._send_batch()

    def _not_data(self, kind: int, raw: bytes) -> None:
        """A record about a process or connection, before it joins the batch."""
        if kind == Kind.EXEC or kind == Kind.EXIT:
            self._lifecycle.append((kind, peek_pid(raw), raw))
            if kind == Kind.EXIT:       # its open opaque connections' reports come first
                for report in self._opaque.at_exit(raw):
                    self._batch.append(report)
                    self._batch_bytes += len(report)
        elif kind == Kind.CONNECT and self._announce_connects:
            self._connected.append(peek_pid(raw))
        elif kind == Kind.TLS_HELLO:
            self._opaque.hello(raw)
        elif kind == Kind.OPAQUE or kind == Kind.CLOSE:
            self._opaque.closed(raw)

    def _send_batch(self) -> None:
        if not self._batch:
            return
        self._announce_connected()
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._events += len(batch)
        self._batches += 1
        self.publisher.publish(MsgKind.EVENTS, {"events": batch}, n_events=len(batch))

    def _announce(self, info: ProcInfo, target: Target) -> None:
        body = {"pid": info.pid, "comm": info.comm, "exe": info.exe,
                "cmdline": info.cmdline[:512], "target": target.id,
                "labels": dict(target.prom_labels)}
        where = processes.placement(info.pid)
        if where is not None:
            body["cgroup"], body["ns_pid"] = where
        body["tls_stack"] = self._stacks.guess(info.pid)
        self.publisher.publish(MsgKind.PROCESS, body)

    def _announce_connected(self) -> None:
        """Everything-mode: announce the processes new among this batch's connects."""
        pids, self._connected = self._connected, []
        for pid in pids:
            if pid in self._announced:
                continue
            if len(self._announced) >= MAX_ANNOUNCED:
                self._announced.clear()
            self._announced.add(pid)
            info = processes.proc_info(pid)
            if info is not None:        # else gone already: nothing left to say
                self._announce(info, self.tracker.selection.match_all)

    def start(self) -> None:
        self.publisher.publish(MsgKind.HELLO, {"pid": os.getpid(), "version": _version()})
        self.tracker.start()

    def statistics(self) -> CollectorStats:
        return CollectorStats(self._events, self._batches, len(self.tracker.traced),
                              sum(1 for n in self.probes.attached.values() if n),
                              self._execs, self._exits, self.probes.probes_attached,
                              self.probes.attach_errors, self.probes.detach_errors,
                              self.tracker.finder.parse_errors)

    def losses(self) -> dict[Loss, int]:
        """This host's members of the ledger (common/losses.py, Stage.reported)."""
        st = self.statistics()
        return {**self.probes.lost_counts(),
                Loss.COLLECTOR_OUTBOX: self.publisher.statistics().dropped_events,
                Loss.FAILOVER: self.publisher.unconfirmed_events(),
                Loss.ATTACH: st.attach_errors, Loss.DETACH: st.detach_errors,
                Loss.ELF_PARSE: st.elf_parse_errors}

    def summary(self) -> dict:
        """The stop summary: statistics, publisher statistics and the ledger."""
        return {**asdict(self.statistics()), **asdict(self.publisher.statistics()),
                **summary(self.losses())}

    def heartbeat(self) -> None:
        lost, errors = heartbeat_maps(self.losses())
        stats = {**asdict(self.statistics()), **asdict(self.publisher.statistics()), **errors}
        self.publisher.publish(MsgKind.HEARTBEAT, {"stats": stats, "lost": lost})

    def run(self, should_stop: Callable[[], bool],
            on_ready: Optional[Callable[[], None]] = None,
            every_second: Optional[Callable[[], None]] = None) -> None:
        """`every_second` runs with the heartbeat (config reload lives there)."""
        self.start()
        if on_ready:
            on_ready()
        next_hb = self.clock()
        with _Waiter(self.probes.fileno()) as waiter:
            while not should_stop():
                drained = self._events
                next_hb = self._drain_and_tick(next_hb, every_second)
                n = self._events - drained
                if n >= GATHER_BELOW:
                    continue            # busy: drain again at once
                if n or waiter.wait(max(0, next_hb - self.clock()) // 1_000_000):
                    self._gather(waiter)
        self.tracker.finder.save()
        self.probes.consume()
        self._send_batch()
        self.heartbeat()
        self.publisher.publish(MsgKind.BYE, {})

    def _gather(self, waiter: "_Waiter") -> None:
        """Let records gather GATHER_NS before they go out as one message,
        drained from the ring every GATHER_CHECK_NS meanwhile (what they say
        of processes handled at once); a signal ends it."""
        deadline = self.clock() + GATHER_NS
        while (left := deadline - self.clock()) > 0:
            if waiter.pause(-(-min(left, GATHER_CHECK_NS) // 1_000_000)):
                return
            self.probes.consume()
            self._handle_lifecycle()
            self._announce_connected()      # /proc read while the process lives

    def _drain_and_tick(self, next_hb: int, every_second) -> int:
        """Drain the ring, publish, and once a second beat; the next beat's time."""
        self.probes.consume()
        self._handle_lifecycle()
        self._send_batch()
        now = self.clock()
        if now >= next_hb:
            self.heartbeat()
            next_hb = now + HEARTBEAT_NS
            self.tracker.finder.save()      # files newly inspected, if any
            if every_second:
                every_second()
        self.publisher.flush()
        if self.publisher.take_moved():
            self._announce_again()
        return next_hb

    def _announce_again(self) -> None:
        """Moved to another aggregator (collector/links.py): announce there the
        processes the last one was told of."""
        traced = dict(self.tracker.traced)
        if self._announce_connects:
            traced.update(dict.fromkeys(self._announced, self.tracker.selection.match_all))
        for pid, target in traced.items():
            info = processes.proc_info(pid)
            if info is not None:
                self._announce(info, target)

    def _handle_lifecycle(self) -> None:
        events, self._lifecycle = self._lifecycle, []
        mapped, self._mmaps = self._mmaps, set()
        exited = set()
        for kind, pid, raw in events:
            self._announced.discard(pid)        # a new image, or gone
            if kind == Kind.EXEC:
                self._execs += 1
                self.tracker.on_exec(pid, _exec_seen(raw))
                exited.discard(pid)
            else:
                self._exits += 1
                self.tracker.on_exit(pid)
                exited.add(pid)
        for pid in mapped - exited:
            self.tracker.on_mmap(pid)


class _Waiter:
    """Sleeps until the ring buffer has records, a signal arrives (SIGINT,
    SIGTERM, SIGCHLD: through signal.set_wakeup_fd, so a stop is seen at
    once) or the timeout ends -- never on a short timer of its own; or
    (pause) until a signal or the timeout, records waiting or not."""

    def __init__(self, ring_fd: int):
        self._poll = select.poll()
        self._poll.register(ring_fd, select.POLLIN)
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._sig_r, select.POLLIN)
        self._signals = select.poll()
        self._signals.register(self._sig_r, select.POLLIN)
        self._previous = -1

    def __enter__(self) -> "_Waiter":
        if threading.current_thread() is threading.main_thread():   # signals go there
            self._previous = signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        return self

    def __exit__(self, *_) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._previous)
        os.close(self._sig_r)
        os.close(self._sig_w)

    def wait(self, timeout_ms: int) -> bool:
        """True when records are waiting."""
        ready = dict(self._poll.poll(timeout_ms))
        if self._sig_r in ready:
            self._take_signals()
        return any(fd != self._sig_r for fd in ready)

    def pause(self, timeout_ms: int) -> bool:
        """Sleep, records waiting or not; True when a signal ended it."""
        if self._signals.poll(timeout_ms):
            self._take_signals()
            return True
        return False

    def _take_signals(self) -> None:
        try:
            while os.read(self._sig_r, 256):
                pass
        except BlockingIOError:
            pass


def _exec_seen(raw: bytes) -> Optional[ProcInfo]:
    """The process an EXEC record describes: its comm and the file executed."""
    try:
        ev = decode_event(raw)
    except MalformedEvent:
        return None
    exe = ev.data.split(b"\0", 1)[0].decode("utf-8", "replace")
    return ProcInfo(ev.pid, ev.comm, exe, "")


def _version() -> str:
    from s3slower import __version__
    return __version__
