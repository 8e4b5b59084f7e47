"""``--encoder ffmpeg``: encode with an ``ffmpeg`` binary, for builds with encoders PyAV lacks
(VAAPI, QSV, VideoToolbox, AMF, ...). The binary is the one on PATH, else the one imageio-ffmpeg ships.

The binary gets raw RGB frames on stdin (rgb24 / rgb48le at the output size), converts them to the
encoder's pixel format with the input's matrix and range (an explicit ``scale`` filter, as the PyAV
writer does with swscale), encodes with the chosen encoder, ``EncodeSettings.codec_options()`` as
output options, colour tags and SAR, and writes NUT to stdout. A thread here reads that NUT stream
as it comes and remuxes it with PyAV into the output container, beside the streams StreamCopier
copies, exactly as ``VideoWriter`` does.

A raw pipe is constant-rate, so every packet is re-stamped: the binary sees frame i at time i/rate,
and its packet for frame i gets frame i's input pts (and duration); decode timestamps are mapped
through the same table, so variable frame rate and start offsets survive. Memory is bounded: frames
are streamed, and only the timing of frames still inside the encoder's reorder window is kept.

Finding the binary, its encoders and pixel formats, and the command line are in vsr.media.ffmpeg.binary;
this module runs the process and remuxes its output.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsr.errors import ProcessingError
from vsr.media.codecs import EncodeSettings
from vsr.media.encode import (
    WriteReport,
    report,
    add_other_streams,
    finish_output,
    open_output,
    release_output,
    section_seconds,
    tag_output,
    tag_video,
)
from vsr.media.ffmpeg.binary import (
    build_command,
    codec_family,
    ffmpeg_python,
    find_ffmpeg,
    pipe_rate,
)
from vsr.media.frame import Frame, VideoInfo
from vsr.media.streams import StreamCopier
from vsr.media.timeline import Continuity

log = logging.getLogger("vsr")

LOG_LINES = 6  # last lines of ffmpeg's stderr quoted in an error
STOP_TIMEOUT_S = 10  # waiting for ffmpeg to exit after a kill


class FFmpegWriter:
    """Same interface and guarantees as ``writer.VideoWriter``; the video is encoded by an ffmpeg process."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        info: VideoInfo,
        size: tuple[int, int],
        settings: EncodeSettings,
        audio: bool = True,
        subtitles: bool = True,
        section_pts: tuple[int, int | None] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.binary = find_ffmpeg()
        ffmpeg_python()
        self.info, self.size, self.settings, self.fmt = info, size, settings, fmt
        self.audio, self.subtitles, self.metadata = audio, subtitles, metadata or {}
        self.time_base = info.time_base
        self.rate = pipe_rate(info)
        self.offset = section_pts[0] if section_pts else 0
        self.section = section_seconds(section_pts, self.time_base)
        self.family = codec_family(settings.codec)
        self.out = open_output(path, fmt, info)
        self.copier: StreamCopier | None = None
        self.proc: subprocess.Popen | None = None
        self.frames = 0  # frames sent to ffmpeg
        self.timeline = Continuity(self.time_base)
        self.packets = 0  # video packets muxed
        self._high_bit: bool | None = None
        self._timing: dict[int, tuple[int, int]] = {}  # frame index → (output pts, duration), for the reorder window
        self._kept = 0  # frames below this index are dropped from _timing
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    # -- the ffmpeg process --------------------------------------------------------------------------

    def _start(self, high_bit: bool) -> None:
        cmd = build_command(self.binary, self.info, self.size, self.settings, high_bit)
        self.settings.silence()  # the child inherits it
        log.debug("ffmpeg: %s", subprocess.list2cmdline(cmd))
        try:
            # Its own session: Ctrl-C reaches vsr, which stops ffmpeg itself.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True)
        except OSError as e:
            raise ProcessingError(f"{self.binary}: cannot start ffmpeg ({e})") from e
        self._threads = [threading.Thread(target=self._read_log, name="vsr-ffmpeg-log", daemon=True),
                         threading.Thread(target=self._remux, name="vsr-ffmpeg-mux", daemon=True)]
        for t in self._threads:
            t.start()

    def _read_log(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._log.append(line)

    def _failure(self, what: str) -> ProcessingError:
        """The error to raise once ffmpeg stopped: its exit status and last lines, else the remux error."""
        self._stop(kill=False, grace=STOP_TIMEOUT_S)
        rc = self.proc.returncode if self.proc is not None else None
        tail = " | ".join(self._log)
        if rc not in (0, None):
            return ProcessingError(f"{self.out.name}: {what}: ffmpeg ({self.settings.codec}) exited with status {rc}"
                                   + (f": {tail}" if tail else ""))
        if self._error is not None:
            return ProcessingError(f"{self.out.name}: {what}: {self._error}" + (f" (ffmpeg: {tail})" if tail else ""))
        return ProcessingError(f"{self.out.name}: {what}" + (f" (ffmpeg: {tail})" if tail else ""))

    def _stop(self, kill: bool, grace: float | None = None) -> None:
        """End the process and the reader threads: killed, or waited for after its stdin closed (for
        ``grace`` seconds, then killed; None: as long as it takes to finish encoding)."""
        if self.proc is None:
            return
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S if kill else grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(STOP_TIMEOUT_S)

    # -- remux: NUT from ffmpeg → the output container, re-stamped ----------------------------------------

    def _open_video(self, src: av.stream.Stream) -> av.stream.Stream:
        """The output's video stream (first, as with VideoWriter), then the other streams and tags."""
        info = self.info
        ost = self.out.add_stream_from_template(src, opaque=True)
        ost.time_base = self.time_base
        # Tagged again: NUT keeps only what the bitstream says (FFV1 says nothing), and the
        # template's codec tag is reset, so the muxer would pick its own for HEVC.
        tag_video(ost, info, self.fmt, self.family)
        self.copier = add_other_streams(self.out, ost, info, self.audio, self.subtitles, self.section)
        tag_output(self.out, self.info, self.metadata)
        return ost

    def _remux(self) -> None:
        try:
            with av.open(self.proc.stdout, "r", format="nut") as src:
                ist = src.streams.video[0]
                ost = self._open_video(ist)
                scale = ist.time_base * self.rate  # NUT timestamp → frame index
                pending: list[av.Packet] = []  # leading packets, whose decode time NUT leaves unset
                shift = last = None
                for packet in src.demux(ist):
                    if packet.size == 0 or packet.pts is None:
                        continue
                    if shift is None:
                        pending.append(packet)
                        if packet.dts is not None:
                            first_dts = packet.dts  # read before muxing rescales the packet
                            shift = self._lead_in(pending, ost, scale)
                            last = round((first_dts - shift) * scale)
                        continue
                    last = max(last + 1, round((packet.dts - shift) * scale) if packet.dts is not None else 0)
                    self._mux(packet, ost, round((packet.pts - shift) * scale), last)
                if pending and shift is None:  # fewer packets than the reorder delay
                    self._lead_in(pending, ost, scale, final=True)
        except BaseException as e:  # noqa: BLE001 - handed to the writing thread
            self._error = e
            if self.proc.poll() is None:
                self.proc.kill()  # ffmpeg would block on a full stdout pipe, and the writer on stdin

    def _lead_in(self, pending: list[av.Packet], ost: av.stream.Stream, scale: Fraction, final: bool = False) -> int:
        """Mux the first packets of a stream with a reorder delay of D frames (NUT gives the first D no
        decode time): packet k < D decodes at pts[k] - (pts[D] - pts[0]), as libx264 stamps them, so the
        lead-in before the first pts is what the PyAV writer's would be. Returns NUT's pts of frame 0."""
        shift = min(p.pts for p in pending)
        delay = len(pending) - (0 if final else 1)
        ahead = self._timing[min(delay, len(pending) - 1)][0] - self._timing[0][0] if delay else 0
        for k, p in enumerate(pending):
            if k < delay:
                self._mux(p, ost, round((p.pts - shift) * scale), 0, self._timing[k][0] - ahead)
            else:
                self._mux(p, ost, round((p.pts - shift) * scale), round((p.dts - shift) * scale))
        pending.clear()
        return shift

    def _mux(self, packet: av.Packet, ost: av.stream.Stream, index: int, dts_index: int, dts: int | None = None) -> None:
        """Mux ``packet`` as frame ``index``'s, decoding at frame ``dts_index``'s pts (or at ``dts``)."""
        if index not in self._timing or dts_index not in self._timing:
            raise ProcessingError(f"ffmpeg returned a packet for frame {max(index, dts_index)}, which was not sent")
        pts, duration = self._timing[index]
        dts = self._timing[dts_index][0] if dts is None else dts
        while self._kept < dts_index:  # decode times only grow: earlier frames are done with
            self._timing.pop(self._kept, None)
            self._kept += 1
        packet.stream = ost
        packet.time_base = self.time_base
        packet.pts, packet.dts, packet.duration = pts, dts, duration
        if self.copier is not None:
            self.copier.pump(float(dts * self.time_base))
        self.out.mux(packet)
        self.packets += 1

    # -- the VideoWriter interface ----------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        image = frame.image
        assert image.shape[1::-1] == self.size, "writer gets frames of the size it was opened with"
        high_bit = image.dtype == np.uint16
        if self.proc is None:
            self._high_bit = high_bit
            self._start(high_bit)
        assert high_bit == self._high_bit, "writer gets frames of one bit depth"
        if self._error is not None or self.proc.poll() is not None:
            raise self._failure("encoding failed")
        pts = self.timeline(frame.pts - self.offset, frame.duration)
        self._timing[self.frames] = (pts, frame.duration or 0)
        data = np.ascontiguousarray(image.astype("<u2", copy=False) if high_bit else image)
        try:
            self.proc.stdin.write(memoryview(data).cast("B"))
        except (OSError, ValueError) as e:
            raise self._failure("encoding failed") from e
        self.frames += 1

    def close(self) -> WriteReport:
        """Let ffmpeg finish, mux the rest and the other streams, and finish the file."""
        try:
            if self.proc is None:  # no frame: nothing to encode (the caller reports it)
                return WriteReport(0)
            self._stop(kill=False)  # stdin closed: ffmpeg flushes its encoder, the remux thread muxes the rest
            if self.proc.returncode != 0 or self._error is not None:
                raise self._failure("encoding failed")
            if self.packets != self.frames:
                raise ProcessingError(f"{self.out.name}: ffmpeg returned {self.packets} packets for {self.frames} frames")
            finish_output(self.out, self.copier, self.info, self.size)
            return report(self.frames, self.timeline, self.copier)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop ffmpeg and release everything without finishing the file (the caller removes it)."""
        self._stop(kill=True)
        release_output(self.out, self.copier)
        self.copier = None
