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
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from llamavid.testing import (
    ServerProcess,
    big_canvas_gif,
    decoder_peak,
    drip,
    huge_png,
    static_clip,
    tiny_model_and_processor,
)


class _Drip(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        drip(self)

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
        gif = decoder_peak("video", big_canvas_gif(root / "canvas.gif"))
        result.update(gif_canvas_peak_mb=round(gif["grew_mb"], 1), gif_kept_frames=gif["outcome"])
        png = decoder_peak("image", huge_png(root / "huge.png"))
        result.update(huge_png_peak_mb=round(png["grew_mb"], 1), huge_png_outcome=png["outcome"])

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
