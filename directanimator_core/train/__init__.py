"""Same2X trainer: turns a base Wan DiT into a DirectAnimator model (PAPER.md §3), one process or many.

config.py        frozen dataclasses of a run, read from JSON / TOML (``train CONFIG``)
cache.py         preparation step: cue triplets + VAE latents per clip, atomic, fingerprinted, checksummed
data.py          same-ID / cross-ID samples, quality-driven pose dropout, process-independent sample order
losses.py        rectified-flow denoising loss, Same2X block-D cosine alignment
lora.py          LoRA on the blocks' Linears through forward hooks (ComfyUI-readable file)
same2x.py        student / frozen teacher, what is trained, gradient checkpointing, one step's losses
loop.py          the loop: prepare, build, resume, step, log, checkpoint, export
checkpoint.py    crash-safe safetensors checkpoints (model, AdamW, EMA, RNG, data position) and exports
distributed.py   torchrun process group, DDP or FSDP2 (fully_shard)
plot.py          loss curves PNG (matplotlib optional)
cli.py           ``python -m directanimator_core train``
"""
