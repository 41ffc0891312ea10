"""SubRip/WebVTT parsing (encodings, tags) and alignment of subtitles to frames."""

from __future__ import annotations

import codecs

import pytest

from llamavid.media import (
    EmptyMediaError,
    MediaNotFoundError,
    Subtitle,
    UnsupportedMediaError,
    align_subtitles,
    load_subtitles,
    parse_srt,
    parse_vtt,
)

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>Hello</i> there,
<font color="#ff0000">General</font> Kenobi!

2
00:00:03,250 --> 00:00:04,000
Wait... what?

3
01:02:03,004 --> 01:02:05,000
Caf\u00e9 &amp; cr\u00e8me
"""

VTT = """WEBVTT - a header line

NOTE this is a comment
spanning lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.500 align:start position:10%
<v Bob>Hello</v> <c.loud>there</c>

00:00:03.250 --> 00:00:04.000
second
cue
"""


def test_parse_srt():
    subs = parse_srt(SRT)
    assert subs == [
        Subtitle(1.0, 2.5, "Hello there, General Kenobi!"),
        Subtitle(3.25, 4.0, "Wait... what?"),
        Subtitle(3723.004, 3725.0, "Caf\u00e9 & cr\u00e8me"),
    ]
    assert parse_srt(SRT, remove_ellipsis=True)[1].text == "Wait what?"


def test_parse_vtt():
    assert parse_vtt(VTT) == [Subtitle(1.0, 2.5, "Hello there"), Subtitle(3.25, 4.0, "second cue")]


def test_messy_srt():
    text = "\r\n\r\n5\r\n00:00:01,5 --> 00:00:02,000\r\n\x00line one\r\n\r\n\r\n00:00:03,000 --> 00:00:04,000\r\n\r\n7\r\n0:00:05.000 --> 0:00:06.000\r\n{\\an8}top\r\n"
    assert parse_srt(text) == [Subtitle(1.5, 2.0, "line one"), Subtitle(5.0, 6.0, "top")]


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8"),
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("utf-16"),  # with BOM
        lambda t: t.encode("utf-16-le"),
        lambda t: t.encode("utf-16-be"),
        lambda t: t.encode("cp1252"),
    ],
)
def test_encodings(tmp_path, encode):
    path = tmp_path / "movie.srt"
    path.write_bytes(encode(SRT.replace("&amp;", "\u2019")))
    subs = load_subtitles(path)
    assert [s.text for s in subs][2] == "Caf\u00e9 \u2019 cr\u00e8me"


def test_latin1_fallback(tmp_path):
    path = tmp_path / "latin.srt"
    path.write_bytes("1\n00:00:01,000 --> 00:00:02,000\n\u00e9t\u00e9 \x81\n".encode("latin-1"))
    assert load_subtitles(path)[0].text == "\u00e9t\u00e9 \x81"


def test_vtt_file_recognised_by_content(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text(VTT)
    assert len(load_subtitles(path)) == 2


def test_load_errors(tmp_path):
    with pytest.raises(MediaNotFoundError):
        load_subtitles(tmp_path / "missing.srt")
    empty = tmp_path / "empty.srt"
    empty.write_bytes(b"")
    with pytest.raises(EmptyMediaError):
        load_subtitles(empty)
    junk = tmp_path / "junk.srt"
    junk.write_text("no cues here\nat all\n")
    with pytest.raises(UnsupportedMediaError):
        load_subtitles(junk)


def test_align_like_the_original():
    times = [0.0, 1.0, 2.0, 3.0]
    subs = [
        Subtitle(0.2, 0.5, "a"),  # ends before frame 1 -> frame 0
        Subtitle(0.5, 1.0, "b"),  # ends exactly at frame 1 (not strictly before) -> frame 0
        Subtitle(1.0, 2.5, "c"),  # frames 0..2 start before 2.5 -> frame 2
        Subtitle(2.6, 9.0, "d"),  # after the last frame -> last frame
    ]
    assert align_subtitles(subs, times) == [["a", "b"], [], ["c"], ["d"]]


def test_subtitles_before_first_frame_go_to_first_frame():
    # The original attaches these to the LAST frame (index -1); we fix that.
    times = [5.0, 6.0, 7.0]
    subs = [Subtitle(0.0, 1.0, "early"), Subtitle(2.0, 5.0, "at start"), Subtitle(5.5, 6.5, "mid")]
    assert align_subtitles(subs, times) == [["early", "at start"], ["mid"], []]


def test_align_pointer_only_moves_forward():
    # Out-of-order input: like the original's pointer, a later cue never moves back.
    subs = [Subtitle(5.0, 6.0, "late"), Subtitle(0.0, 1.5, "early")]
    assert align_subtitles(subs, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]) == [[], [], [], [], [], ["late", "early"]]


def test_align_edge_cases():
    assert align_subtitles([], [0.0, 1.0]) == [[], []]
    assert align_subtitles([Subtitle(0, 1, "x")], []) == []
