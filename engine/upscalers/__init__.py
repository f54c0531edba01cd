"""Upscalers: super-resolution model files (sr_loading, architectures) and the functions
that enlarge pictures and latents with them or with Pillow (enlarge)."""
