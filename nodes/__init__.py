"""ComfyUI glue for nexus_core (thin: schemas, type conversion, model management, progress)."""
from comfy_api.latest import ComfyExtension


class NexusGenExtension(ComfyExtension):
    async def get_node_list(self):
        return []
