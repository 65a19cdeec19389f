// Nexus-Gen notices as toasts that stay until closed. The server sends "nexus-gen.notice" (nodes/host/lora_notice.py)
// when, for example, every key of a LoRA matched nothing in the model: the same text is on the LoRA node while the
// prompt runs, but the frontend removes a node's text when the prompt ends, and the image alone would not show it.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

app.registerExtension({
  name: "NexusGen.Notices",
  setup() {
    api.addEventListener("nexus-gen.notice", ({ detail }) => {
      const node = app.graph?.getNodeById?.(Number(detail.node)) ?? app.graph?.getNodeById?.(detail.node);
      const where = node ? `${node.title || detail.class_type} #${detail.node}` : `${detail.class_type} #${detail.node}`;
      const toast = app.extensionManager?.toast;
      if (toast) {
        // no life: it stays until closed; the summary already says who speaks
        toast.add({ severity: "warn", summary: `Nexus-Gen: ${where}`, detail: detail.text.replace(/^Nexus-Gen: /, "") });
      } else {
        console.warn(`Nexus-Gen: ${where}: ${detail.text}`);
      }
    });
  },
});
