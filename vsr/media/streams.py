"""Everything of the input but the main video: audio, subtitles, data, attachments, metadata, chapters.

Streams are copied packet for packet (payload untouched) when the output container can hold their
codec (for audio, FFmpeg is asked: a packet round-trips through the muxer, containers.round_trips),
converted when it cannot (audio → AAC, or Opus for WebM, at a transparent bitrate; text
subtitles → mov_text for MP4/MOV, mov_text → SRT for Matroska), each conversion said in one line,
and dropped with a warning naming them only when no conversion exists. Packets are read by a second
demuxer of the input and muxed in time order beside the video.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from vsr.errors import InputError, ProcessingError

from vsr.media.containers import round_trips
from vsr.media.probe import describe, is_attached_picture, open_input
from vsr.media.timeline import Continuity

log = logging.getLogger("vsr")

ANY = None  # the container holds every codec of that kind
SUBTITLE_CODECS: dict[str, frozenset[str]] = {
    "mp4": frozenset({"mov_text"}),
    "mov": frozenset({"mov_text"}),
    "matroska": frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "pgssub", "dvd_subtitle",
                           "dvdsub", "dvb_subtitle", "dvbsub"}),
    "webm": frozenset({"webvtt"}),
    "mpegts": frozenset({"dvb_subtitle", "dvb_teletext"}),
}
TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "text", "mov_text"})
ATTACHMENT_FORMATS = ("matroska",)
AUDIO_FALLBACK = {"webm": "libopus"}  # other containers get AAC
AAC_BITRATE_PER_CHANNEL = 128_000  # bit/s: 256 kbit/s stereo AAC is transparent for nearly all material
OPUS_BITRATE_PER_CHANNEL = 96_000  # bit/s: 192 kbit/s stereo Opus, likewise
STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
MUXER_KEYS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder", "duration"})
# A minimal ASS header: FFmpeg's mov_text encoder needs one to open, even when vsr writes the samples.
_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
    b"Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
    b"MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,"
    b"1,1,0,2,10,10,10,0\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


def _holds(table: dict, fmt: str, codec: str) -> bool:
    allowed = table.get(fmt, frozenset())
    return allowed is ANY or codec in allowed


def subtitle_text(codec: str, payload: bytes) -> str:
    """The plain text of one subtitle packet (styling tags removed)."""
    if codec == "mov_text":
        n = int.from_bytes(payload[:2], "big")
        text = payload[2 : 2 + n].decode("utf-8", "replace")
    else:
        text = payload.decode("utf-8", "replace")
        if codec in ("ass", "ssa"):  # ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text
            text = text.split(",", 8)[-1]
            text = re.sub(r"\{[^}]*\}", "", text).replace("\\N", "\n").replace("\\n", "\n")
    return re.sub(r"<[^>]+>", "", text)


class _Route:
    """How one input stream reaches the output: copied, or converted through a small transcoder."""

    def __init__(self, src: av.stream.Stream, dst: av.stream.Stream, mode: str) -> None:
        self.src, self.dst, self.mode = src, dst, mode  # mode: copy | audio | to_mov_text | to_srt

    def packets(self, packet: av.Packet) -> Iterator[av.Packet]:
        if self.mode == "copy":
            packet.stream = self.dst
            yield packet
        elif self.mode == "audio":
            rate = self.dst.codec_context.sample_rate
            for frame in packet.decode():
                if frame.pts is not None:  # in samples: the encoder re-chunks frames and counts in samples
                    frame.pts = round(frame.pts * frame.time_base * rate)
                frame.time_base = Fraction(1, rate)
                yield from self.dst.encode(frame)
        else:
            text = subtitle_text(self.src.codec_context.name, bytes(packet)).encode()
            payload = len(text).to_bytes(2, "big") + text if self.mode == "to_mov_text" else text
            out = av.Packet(payload)
            out.pts, out.dts, out.duration, out.time_base = packet.pts, packet.pts, packet.duration, packet.time_base
            out.stream = self.dst
            yield out

    def flush(self) -> Iterator[av.Packet]:
        if self.mode == "audio":
            yield from self.dst.encode(None)


class StreamCopier:
    """Adds the input's other streams, metadata and chapters to ``out``; ``pump`` muxes in time order."""

    def __init__(
        self,
        source: Path,
        out: av.container.OutputContainer,
        audio: bool = True,
        subtitles: bool = True,
        section: tuple[float, float | None] | None = None,
        main_video: int = 0,
    ) -> None:
        """``main_video``: the index of the video stream being upscaled (the writer's own); other video
        streams are copied when they are cover art and named in a warning otherwise."""
        self.src = open_input(source)
        self.out, self.section = out, section  # section: (start, end or None) seconds in the input's timeline
        self.routes: dict[int, _Route] = {}
        self.copied = 0
        self.timecode: str | None = None  # from a timecode data track, for the video stream's tags
        fmt = out.format.name
        self._copy_metadata(self.src.metadata, out.metadata)
        for s in self.src.streams:
            if s.type == "video" and s.index != main_video:
                self._add_video(s)
            elif s.type == "audio" and audio:
                self._add_audio(s, fmt)
            elif s.type == "subtitle" and subtitles:
                self._add_subtitle(s, fmt)
            elif s.type == "data":
                self._add_data(s)
            elif s.type == "attachment":
                self._add_attachment(s, fmt)
        self._copy_chapters()
        self._pending: av.Packet | None = None
        self.timelines: dict[int, Continuity] = {}  # per input stream: strictly increasing times
        wanted = [self.src.streams[i] for i in self.routes]
        if wanted and section is not None and section[0] > 0:
            # A section deep into a long file: start reading near it, not from the beginning (the
            # seek lands at or before the start; _in_section drops what lies before it).
            try:
                self.src.seek(int(section[0] * av.time_base), backward=True)
            except av.error.FFmpegError:
                pass  # unseekable: read from the start, as before
        self._packets = self.src.demux(wanted) if wanted else iter(())

    # -- setup --------------------------------------------------------------------------------------

    @staticmethod
    def _copy_metadata(src: dict, dst: dict) -> None:
        for k, v in src.items():
            if k.lower() not in MUXER_KEYS:
                dst[k] = v

    def _finish(self, s: av.stream.Stream, dst: av.stream.Stream, mode: str) -> None:
        self._copy_metadata(s.metadata, dst.metadata)
        if s.language:
            dst.metadata["language"] = s.language
        try:
            dst.disposition = s.disposition
        except (AttributeError, ValueError):  # older PyAV: dispositions stay default
            pass
        self.routes[s.index] = _Route(s, dst, mode)

    def _add_audio(self, s: av.stream.Stream, fmt: str) -> None:
        """Copied when the muxer really carries the codec (asked of FFmpeg: containers.round_trips),
        else converted (AAC, or Opus for WebM) with one line saying so."""
        codec = s.codec_context.codec.name  # the codec's name (mp3), not its decoder's (mp3float)
        if round_trips(fmt, s, self._first_packet(s)):
            self._finish(s, self.out.add_stream_from_template(s), "copy")
            return
        encoder = AUDIO_FALLBACK.get(fmt, "aac")
        per_channel = OPUS_BITRATE_PER_CHANNEL if encoder == "libopus" else AAC_BITRATE_PER_CHANNEL
        channels = s.codec_context.channels or 2
        rate = 48000 if encoder == "libopus" else s.codec_context.sample_rate
        dst = self.out.add_stream(encoder, rate=rate)
        # Encoders want a named channel order: PCM sources often say only "2 channels".
        dst.codec_context.layout = STANDARD_LAYOUTS.get(channels, "stereo")
        dst.bit_rate = per_channel * channels
        log.info("audio #%d: %s cannot hold %s; converting to %s at %d kbit/s", s.index, fmt, codec,
                 "Opus" if encoder == "libopus" else "AAC", dst.bit_rate // 1000)
        self._finish(s, dst, "audio")

    def _first_packet(self, s: av.stream.Stream) -> av.Packet | None:
        """The first packet of ``s``, from a demuxer of its own (the copier's stays at the start)."""
        try:
            with open_input(self.src.name) as c:
                return next((p for p in c.demux(c.streams[s.index]) if p.size), None)
        except (InputError, av.error.FFmpegError):
            return None

    def _add_subtitle(self, s: av.stream.Stream, fmt: str) -> None:
        codec = s.codec_context.name
        if _holds(SUBTITLE_CODECS, fmt, codec):
            self._finish(s, self.out.add_stream_from_template(s), "copy")
            return
        target = "mov_text" if fmt in ("mp4", "mov") else "subrip" if fmt == "matroska" else None
        if target is None or codec not in TEXT_SUBTITLES:
            log.warning("dropping subtitle stream #%d (%s): %s cannot hold it and there is no conversion; "
                        "use .mkv to keep it", s.index, codec, fmt)
            return
        dst = self.out.add_stream(target)
        if target == "mov_text":
            dst.codec_context.subtitle_header = _ASS_HEADER
        dst.time_base = s.time_base
        log.info("subtitle #%d: converting %s to %s for %s (styling is not kept)", s.index, codec, target, fmt)
        self._finish(s, dst, "to_mov_text" if target == "mov_text" else "to_srt")

    def _add_video(self, s: av.stream.Stream) -> None:
        """Cover art is copied as it is; any other video stream is not carried over, said by name."""
        if is_attached_picture(s):
            try:
                self._finish(s, self.out.add_stream_from_template(s), "copy")
                return
            except (ValueError, av.error.FFmpegError) as e:
                log.warning("dropping cover art %s: %s cannot hold it (%s)", describe(s), self.out.format.name, e)
                return
        log.warning("video stream %s is not carried over: vsr upscales one video stream (`video_stream` "
                    "picks which)", describe(s))

    def _add_data(self, s: av.stream.Stream) -> None:
        if "timecode" in s.metadata:
            # A timecode track (QuickTime tmcd): muxers rebuild it from the video stream's timecode tag.
            self.timecode = s.metadata["timecode"]
            log.info("timecode %s kept as the video stream's timecode", self.timecode)
            return
        try:
            self._finish(s, self.out.add_stream_from_template(s), "copy")
        except (ValueError, av.error.FFmpegError) as e:
            log.warning("dropping data stream #%d (%s): %s cannot hold it (%s)", s.index,
                        s.codec_context.name if s.codec_context else "unknown", self.out.format.name, e)

    def _add_attachment(self, s: av.stream.Stream, fmt: str) -> None:
        name = s.name or s.metadata.get("filename", f"attachment{s.index}")
        if fmt not in ATTACHMENT_FORMATS:
            log.warning("dropping attachment %s: only Matroska holds attachments", name)
            return
        mimetype = s.mimetype or s.metadata.get("mimetype", "application/octet-stream")
        self.out.add_attachment(name, mimetype, bytes(s.data))

    def _copy_chapters(self) -> None:
        chapters = self.src.chapters()
        if self.section is not None and chapters:
            start, end = self.section
            kept = []
            for ch in chapters:
                tb = ch["time_base"]
                a, b = float(ch["start"] * tb), float(ch["end"] * tb)
                if b <= start or (end is not None and a >= end):
                    continue
                shift = round(start / tb)
                kept.append({**ch, "start": max(0, ch["start"] - shift), "end": ch["end"] - shift})
            chapters = kept
        if chapters:
            self.out.set_chapters(chapters)

    # -- muxing -------------------------------------------------------------------------------------

    def _in_section(self, packet: av.Packet) -> bool:
        """Apply the section offset; False when the packet lies outside the section."""
        if self.section is None or packet.pts is None:
            return True
        start, end = self.section
        t = float(packet.pts * packet.time_base)
        if t < start or (end is not None and t >= end):
            return False
        offset = round(start / packet.time_base)
        packet.pts -= offset
        if packet.dts is not None:
            packet.dts -= offset
        return True

    def _next(self) -> av.Packet | None:
        """The next packet to mux, in the output's timeline (section shift, then the continuity rule
        of vsr.media.timeline on its decode time); None at the end."""
        for packet in self._packets:
            if packet.size == 0 or not self._in_section(packet):  # demuxer flush packet, or outside
                continue
            ts = packet.dts if packet.dts is not None else packet.pts
            if ts is not None:
                timeline = self.timelines.setdefault(packet.stream_index, Continuity(packet.time_base))
                moved = timeline(ts, packet.duration) - ts
                if moved:
                    packet.dts = packet.dts + moved if packet.dts is not None else None
                    packet.pts = packet.pts + moved if packet.pts is not None else None
            return packet
        return None

    @property
    def splices(self) -> int:
        """Places where a copied stream's timestamps went back and the rest of it was shifted."""
        return sum(t.splices for t in self.timelines.values())

    def pump(self, until: float | None) -> None:
        """Mux every packet whose decode time in the output is at or before ``until`` seconds (the
        video's output time; None: all, and flush)."""
        while True:
            packet = self._pending or self._next()
            self._pending = None
            if packet is None:
                if until is None:
                    for route in self.routes.values():
                        for p in route.flush():
                            self.out.mux(p)
                return
            ts = packet.dts if packet.dts is not None else packet.pts
            if until is not None and ts is not None and float(ts * packet.time_base) > until:
                self._pending = packet
                return
            try:
                for p in self.routes[packet.stream_index].packets(packet):
                    self.out.mux(p)
                    self.copied += 1
            except (OSError, ValueError, av.error.FFmpegError) as e:
                s = self.src.streams[packet.stream_index]
                when = float(ts * packet.time_base) if ts is not None else float("nan")
                raise ProcessingError(f"{self.out.name}: {s.type} stream #{s.index} "
                                      f"({s.codec_context.name if s.codec_context else 'unknown'}) at {when:.3f} s "
                                      f"could not be muxed: {e}") from e

    def close(self) -> None:
        self.src.close()


def provenance(version: str, model: str, weights_hash: str | None) -> dict[str, str]:
    """Container tags naming what made the file."""
    text = f"vsr {version}; model {model}" + (f"; weights sha256:{weights_hash}" if weights_hash else "")
    return {"vsr": text, "vsr_version": version, "vsr_model": model, "vsr_weights": weights_hash or "none"}


__all__ = ["StreamCopier", "provenance", "subtitle_text"]
