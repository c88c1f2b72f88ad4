"""Backbones, the CueFusion adapter, the VAE and the one family of modules that knows checkpoint keys.

The velocity model the sampler calls (both WanDiT and CueFusionDiT):

    v = model(x, timestep, context, cond)      x, v (B, C, T, H, W); timestep (B,) or (B, T) = sigma * 1000;
                                               context (B, L, D_text); cond: conditioning.Conditioning

config.py              BackboneConfig, CueFusionConfig (frozen, JSON for checkpoints)
registry.py            named backbone configs (Wan 2.1 1.3B / 14B T2V / I2V, Wan 2.2 5B / A14B, tiny)
wan_dit.py             the Wan DiT with Wan's module names; patchify / time / blocks (hooks) / head
layers.py, rope.py, attention.py   cast-per-call Linear (fp8, scaled fp8), fp32 norms; 3D RoPE; SDPA
conditioning.py        Conditioning and CueLatents: the typed inputs beyond noise, timestep and text
hooks.py               BlockHook: cue injection before a block, block-D readout (Same2X)
cue_embed.py           pose / face cue patch embedders, location masks at latent resolution
cuefusion.py           CueFusion (Eq. 1-3), zero-gated; CueFusionDiT = backbone + adapter
vae.py                 the Wan 2.1 VAE
checkpoints/           the one family that knows checkpoint keys: file headers, backbone layouts (Wan /
                       ComfyUI / diffusers, fp8), the adapter's format (separate or merged), the VAE's keys
"""
