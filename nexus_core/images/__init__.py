"""Images as a person sees them: any file or array read as 8-bit RGB (read), and the host's IMAGE tensors
([B, H, W, C] floats) to and from PIL (tensors). May be imported by any part of nexus_core."""
