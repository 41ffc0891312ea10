"""`llamavid convert`: a released LLaMA-VID checkpoint (+ EVA-ViT-G, the CLIP processor config, BERT's vocabulary)
into a llamavid model folder. Each part is a local path or a name: what is not given is downloaded."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    parser = commands.add_parser("convert", help=run.__doc__, description=run.__doc__)
    parser.add_argument(
        "--model", required=True,
        help="released model: a hub name (YanweiLi/llama-vid-7b-full-224-video-fps-1) or a local folder",
    )
    parser.add_argument(
        "--processor",
        help="CLIP processor: a folder with preprocessor_config.json or a hub name (default: "
        "openai/clip-vit-large-patch14, or -336 for the 336 models, from the model's config)",
    )
    parser.add_argument(
        "--qformer-vocab",
        help="bert-base-uncased vocab.txt: a file or a hub name (default: google-bert/bert-base-uncased)",
    )
    parser.add_argument(
        "--eva",
        help="EVA-ViT-G weights: a local eva_vit_g.pth or an http(s) URL, downloaded from that URL and checked "
        "(default: LAVIS's file, checked against its published checksum; not needed when the checkpoint carries "
        "the vision tower)",
    )
    parser.add_argument(
        "--eva-sha256", metavar="HEX",
        help="SHA-256 the EVA-ViT-G file must have (a URL without it is checked against the hash its server "
        "publishes, and refused when there is none)",
    )
    parser.add_argument(
        "--instructblip",
        help="InstructBLIP Q-Former .pth (file or URL), for checkpoints without Q-Former weights (default: "
        "LAVIS's file for the model's Vicuna size)",
    )
    parser.add_argument("--instructblip-sha256", metavar="HEX", help="SHA-256 the InstructBLIP file must have")
    parser.add_argument(
        "--out",
        help="output folder (default, for a hub name: the cache entry that `--model NAME` then uses everywhere)",
    )
    parser.add_argument("--chat-template", help="template the model was trained with (default: the release's)")
    parser.add_argument("--dtype", default="keep", help="keep (the dtype the release stores its weights in, bfloat16 for LLaMA-VID's; the "
                        "vision tower is cast to it too), float32, float16 or bfloat16")
    parser.add_argument("--vision-heads", type=int, help="attention heads of a non-standard vision tower")
    parser.add_argument("--vision-blocks", type=int, help="EVA blocks to use (default 39 of EVA-CLIP-g's 40)")
    parser.add_argument("--qformer-heads", type=int, help="attention heads of a non-BERT-base Q-Former")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert a released LLaMA-VID checkpoint into a llamavid folder, downloading the parts not given."""
    import torch

    from ..hub.models import Conversion, is_hub_name, llamavid_home
    from ..inference.loading import resolve_dtype
    from ..model.convert import ArchitectureHints
    from .output_folders import check_writable_folder

    # found now, not after the downloads and the conversion
    if args.out is not None:
        check_writable_folder(args.out, "--out")
    elif is_hub_name(args.model):
        check_writable_folder(llamavid_home(), "the conversion cache (LLAMAVID_HOME or HF_HOME)")
    dtype = None if args.dtype == "keep" else resolve_dtype(args.dtype, torch.device("cpu"))
    sizes = (args.vision_heads, args.vision_blocks, args.qformer_heads)
    conversion = Conversion(
        args.model,
        processor=args.processor,
        qformer_vocab=args.qformer_vocab,
        eva=args.eva,
        instructblip=args.instructblip,
        hints=ArchitectureHints(*sizes) if any(v is not None for v in sizes) else None,
        chat_template=args.chat_template,
        dtype=dtype,
        eva_sha256=args.eva_sha256,
        instructblip_sha256=args.instructblip_sha256,
    )
    done = None if args.out is not None else conversion.converted()  # with --out, `run` refuses a llamavid folder
    if done is not None:
        state = "is already a llamavid model" if conversion.ready else "was converted before"
        print(f"{args.model} {state}: {done} (nothing to convert; use --model {args.model} directly)")
        return 0
    out = conversion.run(args.out)
    print(f"Converted model written to {out}")
    return 0
