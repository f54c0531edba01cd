"""How a loaded model's UNet and VAE run on the CPU beyond plain torch.

decode: the final VAE decode (tiling for large pictures, the tiny-autoencoder "fast
decode"). openvino_backend: the UNet and VAE decoder converted to OpenVINO and run
inside the same diffusers pipeline. compile: torch.compile of the UNet, opt-in.
choice: which UNet backend "auto" picks on this machine for this model and size.
int8: the OpenVINO UNet quantized to int8 by nncf (the opt-in backend "openvino-int8").
decoder_int8: the OpenVINO VAE decoder quantized to int8 by nncf (with "openvino-int8").
No torch here: the window reads the names.
"""

BACKEND_NAMES = ("auto", "torch", "openvino", "openvino-int8")
OPENVINO_BACKENDS = ("openvino", "openvino-int8")
