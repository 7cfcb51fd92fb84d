"""wiseft: WiSE-FT (Wortsman et al., CVPR 2022) as a reproducible study package."""
__version__ = "0.1.0"
