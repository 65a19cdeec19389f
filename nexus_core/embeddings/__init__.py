"""What is done with the AR's image embeddings outside the models: blends of prompts and images (blend), files
that store them with their reply (file), and the native FLUX conditioning a host samples from them (conditioning).

Built on ar/ and decoder/; imported by the command line and by the node pack, never by the models."""
