"""A test-only ComfyUI pack: CONDITIONING shaped as umT5-XXL's (width 4096) without the multi-GB encoder.

Loaded beside our pack by tests that run a whole workflow whose model needs a text conditioning (core's
WanAnimateToVideo requires positive and negative); the test puts it where the workflow's CLIPTextEncode is.
"""

import zlib

import torch


class DATestTextConditioning:
    """The prompt as seeded random tokens: the same text gives the same conditioning."""

    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True})}}

    def encode(self, text):
        generator = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return ([[torch.randn(1, 4, 4096, generator=generator), {}]],)


NODE_CLASS_MAPPINGS = {"DATestTextConditioning": DATestTextConditioning}
