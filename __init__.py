"""ComfyUI entry point of the Nexus-Gen node pack (V3 schema).

Nothing heavy happens at import: torch/transformers are imported by the nodes only when they run.
"""

# Served by the host under /extensions/<this folder>/: web/docs/<NodeId>.md (and <NodeId>/zh.md) are the help pages
# the frontend shows in its node library. Translations live in locales/<lang>/nodeDefs.json, read by the host's /i18n.
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import NexusGenExtension

    return NexusGenExtension()
