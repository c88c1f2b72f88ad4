"""Block hooks: how adapters and trainers reach into a backbone's block loop without naming it.

A backbone calls, once per forward, ``hook.start(grid, time_embedding)`` after patchify and time
embedding, then around every block ``tokens = hook.before_block(i, tokens)`` (before self-attention:
where CueFusion adds its cue tokens) and ``tokens = hook.after_block(i, tokens)`` (where Same2X reads
block-D hidden states). A hook object lives for one forward call; build a new one per call.
"""

from __future__ import annotations

from typing import Sequence

import torch


class BlockHook:
    """No-op base: subclasses override what they need."""

    def start(self, grid: tuple[int, int, int], time_embedding: torch.Tensor) -> None:
        """Called after patchify; ``grid`` is the token grid (T, H, W), ``time_embedding`` (B, T_e, D) fp32."""

    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L, D) entering block ``index``; returns the tokens the block sees."""
        return tokens

    def after_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L, D) leaving block ``index``; returns the tokens the next block sees."""
        return tokens


class HookChain(BlockHook):
    """Several hooks in order (e.g. CueFusion, then a Same2X reader)."""

    def __init__(self, hooks: Sequence[BlockHook]) -> None:
        self.hooks = tuple(hooks)

    def start(self, grid: tuple[int, int, int], time_embedding: torch.Tensor) -> None:
        for hook in self.hooks:
            hook.start(grid, time_embedding)

    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        for hook in self.hooks:
            tokens = hook.before_block(index, tokens)
        return tokens

    def after_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        for hook in self.hooks:
            tokens = hook.after_block(index, tokens)
        return tokens


class BlockReader(BlockHook):
    """Keeps the hidden states leaving the blocks in ``depths`` (Same2X's block D), in ``states``."""

    def __init__(self, depths: Sequence[int]) -> None:
        self.depths = frozenset(depths)
        self.states: dict[int, torch.Tensor] = {}

    def after_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        if index in self.depths:
            self.states[index] = tokens
        return tokens
