"""ComfyUI entry point of the Nexus-Gen node pack (V3 schema).

Nothing heavy happens at import: torch/transformers are imported by the nodes only when they run.
"""


async def comfy_entrypoint():
    from .nodes import NexusGenExtension

    return NexusGenExtension()
