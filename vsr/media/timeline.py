"""One rule that keeps a stream's timestamps strictly increasing, for the video vsr encodes and for
every stream it copies, so damaged or spliced inputs neither fail the muxer nor lose sync.

- A timestamp that does not increase by a little (a duplicate, a frame out of order: less than
  ``SPLICE_S`` back) is moved one tick after the one before; the frames after it keep their own times.
- A timestamp that goes back by ``SPLICE_S`` or more is a splice (concatenated captures, a reset
  encoder clock): from there on the stream is shifted to continue one step (its usual frame or
  packet duration) after where it stood, so the seconds after the splice stay seconds long instead
  of being squeezed into ticks.

Every stream of a file follows this rule on its own; after a splice that resets all of them, each
continues from its own end, so audio and video stay within one frame of each other. Forward jumps
are kept: a gap is a gap.
"""

from __future__ import annotations

from fractions import Fraction

SPLICE_S = 0.5  # seconds back from which a timestamp is a splice rather than a frame out of order


class Continuity:
    """Maps one stream's input timestamps (``time_base`` units) to strictly increasing ones."""

    def __init__(self, time_base: Fraction) -> None:
        self.time_base = time_base
        self.splice = max(1, round(Fraction(SPLICE_S) / time_base))  # ticks
        self.shift = 0  # added to every input timestamp since the last splice
        self.last: int | None = None  # the last timestamp given out
        self.step: int | None = None  # the stream's usual step between timestamps
        self._clean = True  # the last timestamp was not moved one tick
        self.repaired = 0  # timestamps moved one tick after the one before
        self.splices = 0  # splices found (each shifts the rest of the stream)
        self.first_in: int | None = None  # the first and the last input timestamp seen
        self.last_in: int | None = None

    def __call__(self, pts: int, duration: int | None = None) -> int:
        """The output timestamp for input ``pts`` (``duration``: the packet's or frame's, if known)."""
        self.first_in = pts if self.first_in is None else self.first_in
        self.last_in = pts
        out = pts + self.shift
        clean = True
        if self.last is not None and out <= self.last:
            if self.last - out >= self.splice:
                step = duration or self.step or 1
                self.shift += self.last + step - out
                out = self.last + step
                self.splices += 1
            else:
                out = self.last + 1
                self.repaired += 1
                clean = False
        elif self.last is not None and self._clean:
            self.step = out - self.last  # the step between the two latest timestamps that were not moved
        self.last, self._clean = out, clean
        return out

    def moved(self, pts: int) -> int:
        """How far the last call moved its timestamp (to move a packet's dts with its pts)."""
        return self.last - pts if self.last is not None else 0
