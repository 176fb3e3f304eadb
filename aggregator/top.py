"""`--output top`: the live screen on a terminal, keys, resizes (the I/O around topview).

Invariants
* emit() never blocks the tracing thread: records, key presses, resizes and
  ticks all go through one bounded queue (queuewriter.QueueWriter) to one
  daemon thread, the only one that touches the model and the screen; what
  finds the queue full is dropped and counted (the ledger's `terminal`).
* The screen is taken at the first tick (once the aggregator runs: a failed
  start leaves the terminal alone) and given back at close(): the terminal's
  own alternate screen (the shell's lines come back), the cursor, and the
  stdin modes as they were.  Keys are read in cbreak mode: no echo, no line
  editing, but Ctrl-C still sends SIGINT, which stops `s3slower run` as it
  always did.
* Each frame is the whole screen, every line `width` columns and put at its
  row by an absolute cursor move: nothing scrolls, and a stray stderr line
  lasts until the next frame (each tick, each key, each SIGWINCH; after
  SIGCONT, fg after Ctrl-Z, the screen and the modes are taken again).
* `q` asks this process to stop as SIGTERM does (`on_quit`); under `run`
  its parent sees the aggregator leave and stops the collector.
* Plain ANSI escapes (VT100 and xterm's alternate screen): tmux, screen and
  any terminal over ssh; no terminfo needed after the aggregator drops root.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass, replace
from typing import Callable, Optional, TextIO

from s3slower.aggregator.queuewriter import QueueWriter
from s3slower.aggregator.records import Record
from s3slower.aggregator.terminal import is_terminal, status_of
from s3slower.aggregator.topmodel import Grouping, Sort, TopModel
from s3slower.aggregator.topview import View, screen
from s3slower.common.losses import Ledger

# Records arrive by the thousand a second at most and cost microseconds to
# count; 16384 queued is seconds of a burst, a few MB.
TOP_QUEUE_ITEMS = 16384
TOP_BATCH = 1024
DEFAULT_SIZE = (80, 24)
ENTER = "\x1b[?1049h\x1b[?25l\x1b[2J"      # alternate screen, cursor hidden, cleared
LEAVE = "\x1b[?25h\x1b[?1049l"              # cursor shown, the shell's screen back
CLEAR = "\x1b[2J"


def press(view: View, key: str) -> View:
    """The view after a key: g grouping, s sort, r reverse; others do nothing."""
    def after(member, members):
        members = list(members)
        return members[(members.index(member) + 1) % len(members)]
    if key == "g":
        return replace(view, grouping=after(view.grouping, Grouping))
    if key == "s":
        return replace(view, sort=after(view.sort, Sort))
    if key == "r":
        return replace(view, reverse=not view.reverse)
    return view


@dataclass(frozen=True)
class Key:
    key: str


@dataclass(frozen=True)
class Frame:
    ledger: Ledger


RESIZE = object()       # SIGWINCH: clear, draw at the new size
RESUMED = object()      # SIGCONT (fg after Ctrl-Z): the shell had the terminal


@dataclass(frozen=True)
class TopStatistics:
    requests: int
    frames: int
    dropped: int            # records (and keys) the full queue refused
    write_error: str


def terminal_size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns or DEFAULT_SIZE[0], size.lines or DEFAULT_SIZE[1]
    except (AttributeError, ValueError, OSError):
        return DEFAULT_SIZE


class TopTerminal:
    """The `--output top` Sink."""

    def __init__(self, stream: TextIO, keys: Optional[TextIO], *, color: bool = False,
                 clock: Callable[[], int] = time.time_ns,
                 on_quit: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTERM),
                 size: Optional[Callable[[], tuple[int, int]]] = None,
                 max_queued: int = TOP_QUEUE_ITEMS):
        """`keys`: where key presses come from (stdin), None when it is no terminal."""
        self.stream = stream
        self.keys_fd = keys.fileno() if keys is not None else None
        self.color = color
        self.clock = clock
        self.on_quit = on_quit
        self.size = size or (lambda: terminal_size(stream))
        self.model = TopModel(clock())
        self.view = View()
        self._ledger = Ledger.of()
        self._requests = self._frames = 0
        self._write_error = ""
        self._clear = True
        self._started = self._closed = False
        self._saved_modes: Optional[tuple[int, list]] = None     # (fd, its termios modes)
        self._previous: dict = {}                # signal -> its handler before ours
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._keys_thread: Optional[threading.Thread] = None
        self._writer = QueueWriter(self._write, name="s3slower-top", max_queued=max_queued,
                                   batch=TOP_BATCH)

    # -- the tracing thread ------------------------------------------------------
    def emit(self, rec: Record) -> None:
        self._requests += 1
        self._writer.put(rec)

    def tick(self, snap, now_wall_ns: int) -> None:   # snap: ledger.Snapshot; main thread
        if not self._started:
            self._start()
        self._writer.put(Frame(snap.ledger))

    def _start(self) -> None:
        if self.keys_fd is not None:
            try:
                self._saved_modes = (self.keys_fd, termios.tcgetattr(self.keys_fd))
            except termios.error:
                self.keys_fd = None
        self._take_terminal()
        self._previous = {sig: signal.signal(sig, self._on_signal)
                          for sig in (signal.SIGWINCH, signal.SIGCONT)}
        self._keys_thread = threading.Thread(target=self._read_keys, name="s3slower-top-keys",
                                             daemon=True)
        self._keys_thread.start()
        self._started = True                    # from here on the writer thread draws

    def _take_terminal(self) -> None:
        """Keys unechoed one by one, the alternate screen (again, after fg)."""
        if self._saved_modes is not None:
            try:
                tty.setcbreak(self._saved_modes[0])
            except termios.error:                # no longer our terminal: keep going
                pass
        self._put_text(ENTER)
        self._clear = True

    def _on_signal(self, signum, _frame) -> None:
        try:
            os.write(self._wake_w, b"c" if signum == signal.SIGCONT else b"w")
        except BlockingIOError:                 # already many wake-ups pending
            pass

    # -- the keys thread -----------------------------------------------------------
    def _read_keys(self) -> None:
        while True:
            fds = [self._wake_r] + ([self.keys_fd] if self.keys_fd is not None else [])
            ready, _, _ = select.select(fds, [], [])
            if self._wake_r in ready:
                wake = os.read(self._wake_r, 256)
                if b"x" in wake:                # close()
                    return
                self._writer.put(RESUMED if b"c" in wake else RESIZE)
            if self.keys_fd in ready:
                try:
                    data = os.read(self.keys_fd, 64)
                except OSError:                 # EIO: the terminal hung up
                    data = b""
                if not data:                    # stdin closed: no more keys
                    self.keys_fd = None
                for key in data.decode("ascii", "replace"):
                    if key in "qQ":
                        self.on_quit()
                    else:
                        self._writer.put(Key(key))

    # -- the writer thread -----------------------------------------------------------
    def _write(self, items: list) -> None:
        now = self.clock()
        draw = False
        for item in items:
            if isinstance(item, Record):
                self.model.add(item, now)
                continue
            draw = True
            if isinstance(item, Key):
                self.view = press(self.view, item.key)
            elif isinstance(item, Frame):
                self._ledger = item.ledger
            elif item is RESIZE:
                self._clear = True
            elif item is RESUMED:
                self._take_terminal()
        if draw and self._started and not self._closed:
            self._draw(now)

    def _draw(self, now: int) -> None:
        width, height = self.size()
        total = self.model.total_row(now)
        status = status_of(total.rate, total.requests, total.errors, self._ledger)
        lines = screen(self.model.rows(self.view.grouping, self.view.sort, now,
                                       self.view.reverse),
                       self.view, self.model.span_s(now), status, width=width,
                       height=height, color=self.color, keys=self.keys_fd is not None)
        text = (CLEAR if self._clear else "") + "".join(
            f"\x1b[{i};1H{line}" for i, line in enumerate(lines, 1)) + "\x1b[H"
        self._clear = False
        if self._put_text(text):
            self._frames += 1

    def _put_text(self, text: str) -> bool:
        if self._write_error:
            return False
        try:
            self.stream.write(text)
            self.stream.flush()
            return True
        except (OSError, ValueError) as e:      # EIO: the terminal went away
            self._write_error = f"{type(e).__name__}: {e}"
            return False

    # -- the end -------------------------------------------------------------------------
    def close(self, timeout_s: float = 2.0) -> None:
        """Stop reading keys, count what is queued, give the terminal back (main thread)."""
        if self._keys_thread is not None:
            os.write(self._wake_w, b"x")
            self._keys_thread.join(timeout_s)
        self._writer.close(timeout_s)
        self._closed = True
        if self._started:
            self._put_text(LEAVE)
            for sig, previous in self._previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            if self._saved_modes is not None:
                try:
                    termios.tcsetattr(self._saved_modes[0], termios.TCSADRAIN,
                                      self._saved_modes[1])
                except termios.error:           # hung up: no terminal left to restore
                    pass
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def statistics(self) -> TopStatistics:
        return TopStatistics(self._requests, self._frames,
                             self._writer.dropped, self._write_error)


def on_stdout(color: bool) -> TopTerminal:
    """The screen on stdout (a terminal: launch.need_terminal), keys from
    stdin when it is one too."""
    return TopTerminal(sys.stdout, sys.stdin if is_terminal(sys.stdin) else None, color=color)
