"""Add-ons applied to a loaded model for one job, each driven by fields of the request:
prompt weighting and long prompts (prompt_encoding), LoRA (lora), textual-inversion
embeddings (embeddings) and the VAE override (vae). `apply.py` runs them in order.
"""
