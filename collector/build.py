"""The collector half built from its settings: host prepared, publisher, probes.

`build()` prepares the host, binds or connects the publisher (an ipc socket
it binds goes to `socket_group`, so the unprivileged aggregator may connect),
and loads the BPF program for `selection`; the caller runs the loop.
"""
from __future__ import annotations

import grp
import os
import time
from typing import BinaryIO, Optional

import zmq

from s3slower.collector import filecache, hostprep
from s3slower.collector.libraries import LibraryFinder
from s3slower.collector.probes import DEFAULT_RINGBUF_PAGES, ProgramOptions, Probes
from s3slower.collector.publisher import (MAX_OUTBOX_BYTES, MAX_OUTBOX_MESSAGES, Publisher,
                                          default_hostname)
from s3slower.collector.service import Collector
from s3slower.common.settings import Settings
from s3slower.common.targets import Selection

MIB = 1024 * 1024


def endpoint(settings: Settings) -> str | tuple[str, ...]:
    """The endpoint to bind, or the aggregators to connect to (one or several)."""
    c = settings.collector
    return c.bind or c.connects


def build(settings: Settings, selection: Selection, *, curve=None,
          record_to: Optional[BinaryIO] = None,
          socket_group: Optional[str] = None) -> Collector:
    c = settings.collector
    hostprep.prepare()
    offset = time.time_ns() - time.monotonic_ns()
    publisher = Publisher(zmq.Context.instance(), endpoint(settings), bind=bool(c.bind),
                          hostname=c.hostname or default_hostname(), wall_offset_ns=offset,
                          curve=curve, record_to=record_to,
                          max_messages=c.buffer_messages or MAX_OUTBOX_MESSAGES,
                          max_bytes=c.buffer_mb * MIB if c.buffer_mb else MAX_OUTBOX_BYTES)
    if c.bind and c.bind.startswith("ipc://") and socket_group:
        _chgrp(c.bind[len("ipc://"):], socket_group)
    opts = ProgramOptions(trace_all=selection.trace_all, self_pid=os.getpid(),
                          ringbuf_pages=c.ringbuf_pages or DEFAULT_RINGBUF_PAGES)
    return Collector(lambda cb: Probes(opts, cb), publisher, selection,
                     finder=LibraryFinder(filecache.DEFAULT_PATH))


def _chgrp(path: str, group: str) -> None:
    try:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    except KeyError:
        pass
