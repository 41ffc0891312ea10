"""The web demo: a Gradio page mounted at `/` on the API's app, answered through the same scheduler.

What the original's page (Gradio 3) did, without its controller and workers: upload an image or a video (shown
as a playable preview) or pick the bundled sample video, ask, watch the answer stream in, ask follow-ups (the
medium's features are encoded once per upload and reused by every turn), reset, tune temperature / top-p /
answer length. New here: a long-video feature file (from `extract-features`) can be chatted about directly, in
the released long-video layout; the original recognised its five movies by the pixel size of an uploaded poster.

Every question, a movie's included, becomes a job on the server's scheduler, the process's one caller of the
model's generator, so the page and the API never generate at the same time on one model.

Uploads land in a folder inside the server's temporary folder (`GRADIO_TEMP_DIR`, unless the operator set one),
which Gradio prunes (`delete_cache`) and the server removes on exit; the original filled `/tmp/gradio`.

What the page may read: files uploaded through it (its upload folder) and the bundled sample, nothing else. A
caller of Gradio's API can name any path in a file argument; Gradio refuses paths outside its upload folder only
for an app that has "launched", which `mount_gradio_app` never marks, so the page marks itself launched once
mounted (Gradio's own `launch()` and reload code set the same flag) and its handlers check the folder again, with
one message whether or not the path exists. With `--api-key` the page asks for a login (Gradio's `auth`) whose
password is the key; that also guards its upload and call routes.
"""

from __future__ import annotations

import hmac
import os
import queue
import uuid
from pathlib import Path

from ..inference.inputs import Turn
from ..inference.settings import GenerationSettings
from .errors import APIError
from .logs import RequestLog
from .schemas import MediaRef

WAIT_S = 600.0  # longest wait for the next piece of an answer before giving up
NO_MEDIA = "No media yet: upload one, or just chat."


def mount_web_demo(app, server):
    """Mount the page at `/` (call after the API routes are declared, so they take precedence)."""
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(server.temp_dir) / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    page = build_page(server)
    key = server.settings.api_key
    auth = None if key is None else (lambda _user, password: hmac.compare_digest(password.encode(), key.encode()))
    sample = server.settings.sample_video
    app = gr.mount_gradio_app(app, page, path="/", max_file_size=server.settings.max_media_bytes,
                              footer_links=[], show_error=True, auth=auth,
                              allowed_paths=[str(Path(sample).resolve())] if sample is not None else [],
                              auth_message="This server needs its API key: any user name, the key as password.")
    page.has_launched = True  # turns on Gradio's upload-folder check of file arguments (see the module docstring)
    return app


def build_page(server):
    import gradio as gr

    demo = WebChat(server)
    with gr.Blocks(title="LLaMA-VID", delete_cache=(600, 3600)) as page:
        media = gr.State(None)  # the current medium's MediaFeatures, per browser session
        gr.Markdown(f"## LLaMA-VID: chat about an image or a video\nModel: `{server.settings.model_name}`. "
                    "The same engine serves the API at `/v1`.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], elem_id="video-upload")
                image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id="image-upload")
                features = gr.File(label="Feature file (from extract-features)", file_types=[".safetensors"],
                                   type="filepath", elem_id="feature-upload")
                sample = gr.Button("Use the sample video", elem_id="sample", visible=demo.sample_video is not None)
                status = gr.Markdown(NO_MEDIA, elem_id="media-status")
                with gr.Accordion("Sampling", open=False):
                    temperature = gr.Slider(0.0, 1.5, value=0.2, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="Top-p")
                    max_tokens = gr.Slider(8, 1024, value=256, step=8, label="Max new tokens")
            with gr.Column(scale=2):
                chatbot = gr.Chatbot(label="Chat", elem_id="chat", height=460)
                question = gr.Textbox(placeholder="Ask about the image or video, then press Enter",
                                      show_label=False, elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    reset = gr.Button("Reset", elem_id="reset")

        picked = [media, chatbot, status]
        video.upload(demo.use_video, [video], picked)
        image.upload(demo.use_image, [image], picked)
        features.upload(demo.use_features, [features], picked)
        sample.click(demo.use_sample, [], [*picked, video])
        asked = dict(fn=demo.ask, inputs=[question, chatbot, media, temperature, top_p, max_tokens],
                     outputs=[chatbot, question])
        question.submit(**asked)
        send.click(**asked)
        reset.click(lambda: (None, [], NO_MEDIA, None, None, None), [], [media, chatbot, status, video, image, features])
    return page


class WebChat:
    """The page's handlers: they run in Gradio's worker threads and hand generation to the scheduler."""

    def __init__(self, server):
        self.server = server
        self.sample_video = server.settings.sample_video

    def _readable(self, path) -> Path:
        """The path, if the page may read it: inside the upload folder, or the sample; one message otherwise."""
        import gradio as gr
        from gradio.utils import get_upload_folder

        if not path:
            raise gr.Error("Nothing was uploaded")
        resolved = Path(os.path.abspath(path))
        uploads = Path(os.path.abspath(get_upload_folder()))
        sample = Path(os.path.abspath(self.sample_video)) if self.sample_video is not None else None
        if resolved.is_relative_to(uploads) and ".." not in resolved.parts or resolved == sample:
            return resolved.resolve()
        raise gr.Error("The page reads only files uploaded through it")

    def _encode(self, kind: str, path):
        import gradio as gr

        path = self._readable(path)
        try:
            features, _ = self.server.encode(MediaRef(kind, str(path)), data=Path(path))
        except APIError as error:
            raise gr.Error(error.message) from None
        frames = f", {features.num_frames} frames" if features.is_video else ""
        return features, [], f"Talking about {Path(path).name} ({kind}{frames}). Ask away."

    def use_video(self, path):
        return self._encode("video", path)

    def use_image(self, path):
        return self._encode("image", path)

    def use_sample(self):
        """The bundled sample video, encoded as an upload of it would be, and shown in the video box."""
        return (*self._encode("video", self.sample_video), str(self.sample_video))

    def use_features(self, path):
        """A movie feature file: answered in the released long-video layout (subtitles between the frames)."""
        import gradio as gr

        from ..errors import LlamaVidError

        path = self._readable(path)
        try:
            movie = self.server.engine.load_movie(path)
        except LlamaVidError as error:
            raise gr.Error(str(error)) from None
        return movie, [], f"Talking about the movie {Path(path).name} ({movie.num_frames} frames). Ask away."

    def ask(self, question, history, media, temperature, top_p, max_tokens):
        """Stream the answer into the chat; the medium is shown in every user turn (training layout), a movie in
        the first one."""
        import gradio as gr

        question = (question or "").strip()
        history = list(history or [])
        if not question:
            yield history, ""
            return
        turns = [Turn(m["role"], _text(m["content"])) for m in history if m["role"] in ("user", "assistant")]
        turns.append(Turn("user", question))
        first_user = next(t for t in turns if t.role == "user")
        first_user.media = [media] if media is not None else []
        record = RequestLog(f"web-{uuid.uuid4().hex}", self.server.settings.log_prompts)
        try:
            self.server.check_text(turns)
            sample = self.server.sample(turns, page=True)
            settings = GenerationSettings(temperature=float(temperature), top_p=float(top_p))
        except APIError as error:
            record.failed(error.status, error.message)
            raise gr.Error(error.message) from None
        record.started([t.text for t in turns], sample, 0)
        events: queue.Queue = queue.Queue()
        job = self.server.submit(sample, settings, lambda kind, value: events.put((kind, value)), int(max_tokens))
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield history, ""
        answer, status = "", 200
        try:
            while True:
                kind, value = events.get(timeout=WAIT_S)
                if kind == "text":
                    answer += value
                    history[-1] = {"role": "assistant", "content": answer}
                    yield history, ""
                elif kind == "error":
                    status = 500
                    raise gr.Error(f"generation failed: {type(value).__name__}")
                else:
                    break
        finally:  # also when the browser goes away mid-answer (GeneratorExit)
            job.cancel()
            record.finished(job, status if job.row.finish_reason != "cancelled" else 499)


def _text(content) -> str:
    """Chatbot message content as plain text (Gradio may hand back a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content or "")
