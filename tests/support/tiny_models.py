"""Tiny randomly initialised production models, saved as a user's download would be (issue 13 §5).

No weights can be had here, so the production backends are tested on their real code path with
models of the real classes at toy sizes: ``save_pretrained`` folders for Mask2Former and OneFormer
(config, weights, image processor, and for OneFormer a tokenizer), and a SAM 2.1 checkpoint file
in the released layout (``{"model": state_dict}``). Tests import them with ``models import`` and
the backends load them through the model store.

Random classifiers answer "no object" for every query (the last class's bias wins), so nothing
would ever reach a vote; :func:`tiny_panoptic` lowers that one bias so the queries carry the
dataset's classes. The masks stay random: tests check shapes, exclusivity, names and mapping,
never which class lands where.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

from tasks.models import enforce_offline

# the model's own test-time resize (shortest edge); production checkpoints carry 512..1024
TINY_SHORTEST_EDGE = 256


def _swin():
    from transformers import SwinConfig

    return SwinConfig(image_size=224, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                      window_size=7, out_features=["stage1", "stage2", "stage3", "stage4"])


def _char_tokenizer():
    """A CLIP tokenizer whose vocabulary is the letters (no merges): OneFormer's task prompt
    ("the task is panoptic") tokenises to one id per letter."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_panoptic(folder: str | Path, architecture: str, class_names: list[str], *, seed: int = 0,
                  num_queries: int = 12) -> Path:
    """A ``save_pretrained`` folder of a tiny random Mask2Former or OneFormer with ``class_names``
    as its ``id2label``."""
    enforce_offline()
    import transformers

    folder = Path(folder)
    id2label = dict(enumerate(class_names))
    label2id = {n: i for i, n in id2label.items()}
    common = dict(backbone_config=_swin(), hidden_dim=32, mask_feature_size=32, dim_feedforward=64,
                  encoder_feedforward_dim=64, num_queries=num_queries, decoder_layers=2, encoder_layers=1,
                  num_attention_heads=2, id2label=id2label, label2id=label2id)
    size = {"shortest_edge": TINY_SHORTEST_EDGE, "longest_edge": 4 * TINY_SHORTEST_EDGE}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture == "mask2former":
            from transformers.models.mask2former.image_processing_pil_mask2former import (
                Mask2FormerImageProcessorPil,
            )

            cfg = transformers.Mask2FormerConfig(feature_size=32, **common)
            model = transformers.Mask2FormerForUniversalSegmentation(cfg).eval()
            head = model.class_predictor
            processor = Mask2FormerImageProcessorPil(size=size, num_labels=len(class_names))
            tokenizer = None
        elif architecture == "oneformer":
            from transformers.models.oneformer.image_processing_pil_oneformer import (
                OneFormerImageProcessorPil,
            )

            common.pop("mask_feature_size")
            cfg = transformers.OneFormerConfig(conv_dim=32, mask_dim=32, text_encoder_width=32,
                                               text_encoder_num_layers=1, text_encoder_vocab_size=64,
                                               query_dec_layers=1, text_encoder_n_ctx=4, **common)
            model = transformers.OneFormerForUniversalSegmentation(cfg).eval()
            head = model.model.transformer_module.decoder.class_embed
            processor = OneFormerImageProcessorPil(size=size, num_labels=len(class_names))
            tokenizer = _char_tokenizer()
        else:
            raise ValueError(architecture)
        with torch.no_grad():
            head.bias[-1] = -20.0       # "no object" never wins (see the module doc)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def tiny_sam2_checkpoint(folder: str | Path, *, image_size: int = 128, seed: int = 0) -> Path:
    """A folder holding ``sam2.1_hiera_tiny.pt``: SAM 2.1 Hiera-tiny with random weights, in the
    layout of the released checkpoints."""
    from sam2.build_sam import build_sam2_video_predictor

    from tasks.backends.sam2_propagator import MODEL_CONFIGS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam2_video_predictor(MODEL_CONFIGS["tiny"], ckpt_path=None, device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={int(image_size)}"])
    torch.save({"model": model.state_dict()}, folder / "sam2.1_hiera_tiny.pt")
    return folder
