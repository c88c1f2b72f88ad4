"""The one family of modules that knows checkpoint keys and file formats.

header.py     safetensors headers read without loading tensors (every loader's first check)
backbone.py   Wan DiT files: what a file is, key layouts (Wan / ComfyUI / diffusers), fp8 formats, the
              config from shapes, the load report, load_backbone
adapter.py    the CueFusion adapter's format, separate or merged with a backbone; load_model, load_adapter
vae.py        the Wan 2.1 VAE's keys; load_wan_vae
"""
