"""How a loaded model's UNet and VAE run on the CPU beyond plain torch.

decode: the final VAE decode (tiling for large pictures, the tiny-autoencoder "fast
decode"). openvino_backend: the UNet and VAE decoder converted to OpenVINO and run
inside the same diffusers pipeline. compile: torch.compile of the UNet, opt-in.
choice: which UNet backend "auto" picks on this machine for this model.
"""

BACKEND_NAMES = ("auto", "torch", "openvino")
