"""The inference pipeline: a reference image and a driving cue triplet in, an animation out.

loaded_model.py   the loaded DirectAnimator model (Animator: DiT + adapter + run settings), how it is loaded
                  from files (fp8 storage too) and where its weights sit for one run (placement, block swap)
single_pass.py    animate(): the whole clip in one window with our own VAE, decoded to frames (the demo,
                  the evaluation, the bench)
windowed.py       animate_latents(): any VAE encoder (ComfyUI's through the nodes), long clips in windows
                  blended in latent space, the reference in every window; a raw Wan latent out
command.py        ``python -m directanimator_core animate``: files in, an mp4 out, on windowed.py
"""
