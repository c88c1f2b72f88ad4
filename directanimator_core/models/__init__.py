"""Backbones, the CueFusion adapter, the VAE and the one module that knows checkpoint keys."""
