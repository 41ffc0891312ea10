"""`llamavid convert`: a released LLaMA-VID checkpoint (+ EVA-ViT-G, the CLIP processor config, BERT's vocabulary)
into a llamavid model folder."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    parser = commands.add_parser("convert", help=run.__doc__, description=run.__doc__)
    parser.add_argument("--model", required=True, help="released model folder (config.json, pytorch_model-*.bin)")
    parser.add_argument("--processor", required=True, help="the original's processor/clip-patch14-224 (or -336) folder")
    parser.add_argument("--qformer-vocab", help="bert-base-uncased vocab.txt (default: MODEL/vocab.txt)")
    parser.add_argument("--eva", help="LAVIS eva_vit_g.pth (default: the EVA copy inside the checkpoint, if any)")
    parser.add_argument("--instructblip", help="InstructBLIP Q-Former .pth, for Q-Former weights the folder lacks")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--chat-template", default="vicuna_v1", help="template the model was trained with")
    parser.add_argument("--dtype", default="keep", help="keep (as stored), float32, float16 or bfloat16")
    parser.add_argument("--vision-heads", type=int, help="attention heads of a non-standard vision tower")
    parser.add_argument("--vision-blocks", type=int, help="EVA blocks to use (default 39 of EVA-CLIP-g's 40)")
    parser.add_argument("--qformer-heads", type=int, help="attention heads of a non-BERT-base Q-Former")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert a released LLaMA-VID model folder (+ EVA-ViT-G and BERT vocab) into a llamavid folder."""
    import torch

    from ..inference.loading import resolve_dtype
    from ..model.convert import ArchitectureHints, convert_checkpoint

    dtype = None if args.dtype == "keep" else resolve_dtype(args.dtype, torch.device("cpu"))
    out = convert_checkpoint(
        model_dir=args.model,
        output_dir=args.out,
        processor_dir=args.processor,
        qformer_vocab=args.qformer_vocab,
        eva_path=args.eva,
        instructblip_path=args.instructblip,
        hints=ArchitectureHints(args.vision_heads, args.vision_blocks, args.qformer_heads),
        chat_template=args.chat_template,
        dtype=dtype,
    )
    print(f"Converted model written to {out}")
    return 0
