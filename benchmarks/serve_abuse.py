"""What a careless or hostile client can cost the server, measured: decoder peak memory for a small GIF with a huge
canvas and for a complete huge PNG, the time a text-only request takes while 40 media URLs drip in, and how fast a
6,000-frame clip and 1,200 images are refused. Loopback only: the drip host and the server run on 127.0.0.1.

Prints one JSON line:

    gif_canvas_peak_mb, gif_kept_frames (a 2000x2000-canvas GIF of 16 one-second frames, decoded at 224 px),
    huge_png_peak_mb, huge_png_outcome (a complete 13000x13000 PNG),
    text_during_drips_s (a text-only request answered while 40 dripping fetches are in flight),
    drips_answered_s (the slowest of the 40, cut at --fetch-timeout 3),
    long_clip_refused_s (6,000 frames against --max-decoded-frames 1000), images_refused_s (1,200 image URLs)

Peaks are the growth of a fresh process's VmHWM (Linux), reset before decoding. Expected: the GIF well under the
267 MB its frames took at canvas size, the PNG refused at under 1 MB, the text request in about a second.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from PIL import Image

from llamavid.serve.launch import ServerProcess
from llamavid.testing import tiny_model_and_processor

PEAK = """
import json, sys
from llamavid.media import MediaError, load_image, load_video

def status_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

before = status_kb("VmRSS")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
try:
    if sys.argv[1] == "image":
        load_image(sys.argv[2])
        outcome = "decoded"
    else:
        outcome = f"{load_video(sys.argv[2], fps=1.0, max_frames=64, size=224).frames.shape[0]} frames"
except MediaError as error:
    outcome = type(error).__name__
print(json.dumps({"peak_mb": round((status_kb("VmHWM") - before) / 1024, 1), "outcome": outcome}))
"""


def decoder_peak(kind: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PEAK, kind, str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def canvas_gif(path: Path, side: int = 2000, frames: int = 16) -> Path:
    def frame(index):
        image = Image.new("L", (side, side), 0)
        image.paste(255, (index * 2, 0, index * 2 + 2, 2))
        return image

    frame(0).save(path, save_all=True, append_images=(frame(i) for i in range(1, frames)), duration=1000, loop=0)
    return path


def huge_png(path: Path, side: int = 13000) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" * (side + 1)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def static_clip(path: Path, frames: int = 6000, fps: int = 30, side: int = 32) -> Path:
    """A still picture for `frames` frames, one keyframe at the start (as a static screen recording encodes): a few
    KB, and sampling it means decoding it straight through."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"x264-params": f"keyint={frames}:min-keyint={frames}:scenecut=0"}
        still = av.VideoFrame.from_ndarray(np.full((side, side, 3), 90, np.uint8), format="rgb24")
        for index in range(frames):
            still.pts = index
            container.mux(stream.encode(still))
        container.mux(stream.encode())
    return path


class _Drip(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def chat(parts) -> dict:
    return {"messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0}


def timed(function):
    start = time.monotonic()
    result = function()
    return result, round(time.monotonic() - start, 3)


def main() -> None:
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        gif = decoder_peak("video", canvas_gif(root / "canvas.gif"))
        result.update(gif_canvas_peak_mb=gif["peak_mb"], gif_kept_frames=gif["outcome"])
        png = decoder_peak("image", huge_png(root / "huge.png"))
        result.update(huge_png_peak_mb=png["peak_mb"], huge_png_outcome=png["outcome"])

        model, processor = tiny_model_and_processor(seed=3)
        model.save_pretrained(root / "model")
        processor.save_pretrained(root / "model")
        clip = static_clip(root / "long.mp4")

        class Host(ThreadingHTTPServer):
            daemon_threads = True

        drip = Host(("127.0.0.1", 0), _Drip)
        threading.Thread(target=drip.serve_forever, daemon=True).start()
        args = ["--model", str(root / "model"), "--no-web", "--allow-internal-media-hosts", "--fetch-timeout", "3",
                "--allowed-local-media-path", str(root), "--max-decoded-frames", "1000",
                "--limit-mm-per-prompt", '{"image": 2000}']
        with ServerProcess(args, log=root / "server.log") as server, \
                httpx.Client(timeout=120, limits=httpx.Limits(max_connections=100)) as client:
            url = f"{server.url}/v1/chat/completions"
            source = f"http://127.0.0.1:{drip.server_address[1]}/drip"
            with ThreadPoolExecutor(40) as pool:
                slow = [pool.submit(timed, lambda i=i: client.post(url, json=chat(
                    [{"type": "image_url", "image_url": {"url": f"{source}?{i}"}}, {"type": "text", "text": "?"}])))
                    for i in range(40)]
                time.sleep(1.0)
                answer, result["text_during_drips_s"] = timed(lambda: client.post(url, json=chat("Quick question?")))
                assert answer.status_code == 200, answer.text
                result["drips_answered_s"] = max(future.result()[1] for future in slow)
            long_part = {"type": "video_url", "video_url": {"url": f"file://{clip}"}}
            refused, result["long_clip_refused_s"] = timed(lambda: client.post(url, json=chat([long_part])))
            assert refused.status_code == 413, refused.text
            images = [{"type": "image_url", "image_url": {"url": f"{source}?img{i}"}} for i in range(1200)]
            refused, result["images_refused_s"] = timed(lambda: client.post(url, json=chat(images)))
            assert refused.status_code == 400, refused.text
        drip.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
