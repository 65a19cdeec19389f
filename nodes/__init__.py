"""ComfyUI glue for nexus_core (thin: schemas, type conversion, memory manager, progress)."""
from comfy_api.latest import ComfyExtension

import folder_paths

from .inputs import paths

paths.register(folder_paths)


class NexusGenExtension(ComfyExtension):
    async def get_node_list(self):
        from .host import lora_notice
        lora_notice.install()  # skipped LoRA keys are said on the LoRA node, not only in the log
        from .conditioning import NexusGenConditioning, NexusGenNegative, NexusGenScheduler
        from .embeds import NexusGenEditEmbeds, NexusGenEmbedsBlend, NexusGenImageEmbeds, NexusGenPromptEmbeds
        from .loaders import (NexusGenARLoader, NexusGenDecoderLoader, NexusGenModelPatch, NexusGenProjectorLoader,
                              NexusGenTextEncoderLoader)
        from .understand import NexusGenUnderstand

        return [NexusGenARLoader, NexusGenDecoderLoader, NexusGenProjectorLoader, NexusGenModelPatch,
                NexusGenTextEncoderLoader, NexusGenPromptEmbeds,
                NexusGenEditEmbeds, NexusGenImageEmbeds, NexusGenEmbedsBlend, NexusGenConditioning,
                NexusGenNegative, NexusGenScheduler, NexusGenUnderstand]
