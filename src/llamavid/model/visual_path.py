"""The visual path, written once for every model that shows pictures to an LLM: the transformers model, the vLLM
model and the trainer's shared-prefix forward. A class that mixes it in has a `vision_tower` (pixels -> patch
features) and a `token_generator` (features and Q-Former prompts -> context and content tokens)."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class VisualPath:
    """Vision features and visual tokens, on `self.vision_tower` and `self.token_generator`."""

    def get_vision_features(self, pixel_values: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Prompt-independent part, worth caching: (F, 3, S, S) -> (F, 1 + N, V), CLS kept, no final norm."""
        chunks = pixel_values.split(batch_size) if batch_size else (pixel_values,)
        return torch.cat([self.vision_tower(chunk) for chunk in chunks])

    def get_visual_tokens(
        self,
        vision_features: torch.Tensor,
        qformer_input_ids: torch.LongTensor,
        qformer_attention_mask: torch.Tensor,
        media_frame_counts: torch.LongTensor | None = None,
        segment_media_index: torch.LongTensor | None = None,
        vision_features_include_cls: bool = True,
    ) -> torch.Tensor:
        """Visual tokens of every segment in reading order: (sum of segment frames x tokens_per_frame, H).

        Rows are ordered segment-major, then frame: ctx_1, content_1, ctx_2, content_2, ... per segment.
        """
        device = vision_features.device  # stored features (movie files are float16) are cast chunk by chunk
        num_frames = vision_features.shape[0]
        if media_frame_counts is None:
            media_frame_counts = torch.ones(num_frames, dtype=torch.long, device=device)
        media_frame_counts = media_frame_counts.to(device)
        if int(media_frame_counts.sum()) != num_frames:
            raise ValueError(
                f"media_frame_counts add up to {int(media_frame_counts.sum())} frames but {num_frames} frames "
                "of vision features were given"
            )
        num_segments = qformer_input_ids.shape[0]
        if segment_media_index is None:
            if num_segments != media_frame_counts.numel():
                raise ValueError(
                    f"{num_segments} Q-Former prompts for {media_frame_counts.numel()} media items: pass "
                    "segment_media_index to say which media item each prompt belongs to"
                )
            segment_media_index = torch.arange(num_segments, device=device)
        segment_media_index = segment_media_index.to(device)
        row_frames, row_prompts = visual_rows(media_frame_counts, segment_media_index)
        tokens = self.token_generator(
            vision_features,
            qformer_input_ids.to(device),
            qformer_attention_mask.to(device),
            row_frames,
            row_prompts,
            include_cls=vision_features_include_cls,
        )  # (R, tokens_per_frame, H)
        return tokens.flatten(0, 1)

    def visual_tokens_from_inputs(self, inputs: Mapping) -> torch.Tensor | None:
        """The visual tokens of a batch's model inputs (`pixel_values` or `vision_features`, with their Q-Former
        prompts, frame counts and segments, as `collate` makes them); None when they show nothing."""
        pixel_values, vision_features = inputs.get("pixel_values"), inputs.get("vision_features")
        if pixel_values is None and vision_features is None:
            return None
        if pixel_values is not None and vision_features is not None:
            raise ValueError("Pass pixel_values or vision_features, not both")
        qformer_input_ids = inputs.get("qformer_input_ids")
        if qformer_input_ids is None:
            raise ValueError("Visual input needs qformer_input_ids (one Q-Former prompt per visual segment)")
        qformer_attention_mask = inputs.get("qformer_attention_mask")
        if qformer_attention_mask is None:
            qformer_attention_mask = torch.ones_like(qformer_input_ids)
        include_cls = inputs.get("vision_features_include_cls", True)
        if vision_features is None:
            vision_features, include_cls = self.get_vision_features(pixel_values), True
        return self.get_visual_tokens(
            vision_features,
            qformer_input_ids,
            qformer_attention_mask,
            inputs.get("media_frame_counts"),
            inputs.get("segment_media_index"),
            vision_features_include_cls=include_cls,
        )


def visual_rows(media_frame_counts: torch.Tensor, segment_media_index: torch.Tensor):
    """(frame, prompt) index of every row: for each segment, every frame of its media item, in order."""
    first_frame = media_frame_counts.cumsum(0) - media_frame_counts  # (M,)
    frames_per_segment = media_frame_counts[segment_media_index]  # (S,)
    row_prompts = torch.repeat_interleave(
        torch.arange(segment_media_index.numel(), device=segment_media_index.device), frames_per_segment
    )
    segment_start = frames_per_segment.cumsum(0) - frames_per_segment
    offset_in_segment = torch.arange(row_prompts.numel(), device=row_prompts.device) - segment_start[row_prompts]
    row_frames = first_frame[segment_media_index][row_prompts] + offset_in_segment
    return row_frames, row_prompts


__all__ = ["VisualPath", "visual_rows"]
