"""The web demo: a Gradio page mounted at `/` on the API's app, talking to the same scheduler.

What the original's page (Gradio 3, spec section 6.3) did, without its controller and workers: upload an image
or a video (or pick the bundled sample), ask, watch the answer stream in, ask follow-ups (the media's features
are encoded once per upload and reused by every turn), reset, tune temperature / top-p / answer length. New
here: a long-video feature file (safetensors from `extract-features`) can be chatted about directly; the
original recognised its five movies by the pixel size of an uploaded poster.

Uploads land in a folder inside the server's temporary folder (`GRADIO_TEMP_DIR`, unless the operator set one),
which Gradio prunes (`delete_cache`) and the server removes on exit; the original filled `/tmp/gradio`.
"""

from __future__ import annotations

import logging
import os
import queue
import uuid
from pathlib import Path

from ..inference.feature_files import FeatureFile
from .errors import APIError
from .prompts import build_sample
from .schemas import MediaRef, Turn

logger = logging.getLogger("llamavid.serve")

WAIT_S = 600.0  # longest wait for the next piece of an answer before giving up


def mount_web_demo(app, server):
    """Mount the page at `/` (call after the API routes are declared, so they take precedence)."""
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(server.temp_dir) / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    page = build_page(server)
    return gr.mount_gradio_app(app, page, path="/", max_file_size=server.settings.max_media_bytes,
                               footer_links=[], show_error=True)


def build_page(server):
    import gradio as gr

    demo = WebChat(server)
    with gr.Blocks(title="LLaMA-VID", delete_cache=(600, 3600)) as page:
        media = gr.State(None)  # the current medium's MediaFeatures, per browser session
        gr.Markdown(f"## LLaMA-VID: chat about an image or a video\nModel: `{server.settings.model_name}`. "
                    "The same engine serves the API at `/v1`.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.File(label="Video", file_types=["video"], type="filepath", elem_id="video-upload")
                image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id="image-upload")
                features = gr.File(label="Feature file (from extract-features)", file_types=[".safetensors"],
                                   type="filepath", elem_id="feature-upload")
                sample = gr.Button("Use the bundled sample video", elem_id="sample")
                status = gr.Markdown("No media yet: upload one, or just chat.", elem_id="media-status")
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
        sample.click(demo.use_sample, [], picked)
        asked = dict(fn=demo.ask, inputs=[question, chatbot, media, temperature, top_p, max_tokens],
                     outputs=[chatbot, question])
        question.submit(**asked)
        send.click(**asked)
        reset.click(lambda: (None, [], "No media yet: upload one, or just chat.", None, None, None),
                    [], [media, chatbot, status, video, image, features])
    return page


class WebChat:
    """The page's handlers: they run in Gradio's worker threads and hand generation to the scheduler."""

    def __init__(self, server):
        self.server = server

    def _picked(self, features, label: str):
        kind = "video" if features.is_video else "image"
        frames = f", {features.num_frames} frames" if features.is_video else ""
        return features, [], f"Talking about {label} ({kind}{frames}). Ask away."

    def _encode(self, kind: str, path):
        import gradio as gr

        if not path:
            raise gr.Error("Nothing was uploaded")
        try:
            features, _ = self.server.media.encode_data(MediaRef(kind, str(path)), Path(path))
        except APIError as error:
            raise gr.Error(error.message) from None
        return self._picked(features, Path(path).name)

    def use_video(self, path):
        return self._encode("video", path)

    def use_image(self, path):
        return self._encode("image", path)

    def use_features(self, path):
        """A movie feature file: answered in the released long-video layout (subtitles between the frames)."""
        import gradio as gr

        from ..inference.feature_files import FeatureFileError

        if not path:
            raise gr.Error("Nothing was uploaded")
        try:
            movie = self.server.engine.load_movie(path)
        except FeatureFileError as error:
            raise gr.Error(str(error)) from None
        return movie, [], f"Talking about the movie {Path(path).name} ({movie.num_frames} frames). Ask away."

    def _ask_movie(self, question, history, movie, temperature, top_p, max_tokens):
        """Movies go through the engine's long-video prompt, one conversation at a time (no batching)."""
        import gradio as gr

        from ..inference.engine import GenerationSettings

        messages = [(m["role"], _text(m["content"])) for m in history if m["role"] in ("user", "assistant")]
        messages.append(("user", question))
        settings = GenerationSettings(float(temperature), float(top_p), int(max_tokens))
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield history, ""
        answer = ""
        try:
            for piece in self.server.engine.chat(messages, movie, settings=settings):
                answer += piece
                history[-1] = {"role": "assistant", "content": answer}
                yield history, ""
        except ValueError as error:  # e.g. the movie and question do not fit the context
            raise gr.Error(str(error)) from None

    def use_sample(self):
        from ..toy.demo import moving_shapes_video

        return self._picked(self.server.media.encode_frames(moving_shapes_video(8, size=64)), "the sample video")

    def ask(self, question, history, media, temperature, top_p, max_tokens):
        """Stream the answer into the chat; the medium is shown in every user turn (training layout)."""
        import gradio as gr

        from .app import RequestLog
        from .scheduler import Job

        question = (question or "").strip()
        history = list(history or [])
        if not question:
            yield history, ""
            return
        if isinstance(media, FeatureFile):
            yield from self._ask_movie(question, history, media, temperature, top_p, max_tokens)
            return
        turns = [Turn(m["role"], _text(m["content"])) for m in history if m["role"] in ("user", "assistant")]
        turns.append(Turn("user", question))
        first_user = next(t for t in turns if t.role == "user")
        first_user.media = [media] if media is not None else []
        record = RequestLog(f"web-{uuid.uuid4().hex}", self.server.settings.log_prompts)
        try:
            sample = build_sample(self.server.engine, turns)
        except APIError as error:
            record.failed(error.status, error.message)
            raise gr.Error(error.message) from None
        record.started([t.text for t in turns], sample, 0)
        events: queue.Queue = queue.Queue()
        room = self.server.engine.context_length - len(sample.ids)
        job = Job(sample, min(int(max_tokens), room), lambda kind, value: events.put((kind, value)),
                  temperature=float(temperature), top_p=float(top_p), stop=sample.stop)
        self.server.scheduler.submit(job)
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
            record.finished(job, status if job.finish_reason != "cancelled" else 499)


def _text(content) -> str:
    """Chatbot message content as plain text (Gradio may hand back a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content or "")
