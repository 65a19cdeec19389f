"""The Chinese copies (<name>_zh.json): the same graphs with Chinese notes, group titles and prompts."""
from __future__ import annotations

from .links import GGUF_FILE, HF_REDUX, HF_SIGLIP, HF_TURBO, LORA_FILE
from .notes import files_md, hub, note

# -- Chinese copies (<name>_zh.json): the same graphs with Chinese notes, group titles and prompts ----------------
# Nexus-Gen is trained on Chinese and English prompts; the frontend translates our node names itself
# (locales/zh/nodeDefs.json), the notes, titles and prompt texts are the workflow's own.
VRAM_ZH = ("**显存预设**（AR = AR 模型加载器，DiT = 解码器加载器）：\n"
           "- 8 GB：AR 的 `weight_dtype` 设为 fp8_e4m3fn（放不下的部分由 ComfyUI 流式传输；或 `device` 设为 cpu，"
           "约需 9 GB 内存）；DiT 用 GGUF Q4_0（见 GGUF 工作流；由 `nexus-gen convert` 生成，两种解码器都可以）\n"
           "- 12 GB：AR fp8_e4m3fn；DiT fp8_e4m3fn（最后一部分流式传输）或 GGUF Q4_0\n"
           "- 16 GB：AR fp8_e4m3fn；DiT fp8_e4m3fn\n"
           "- 24 GB：AR 默认（bf16）；DiT fp8_e4m3fn\n"
           "- 48 GB 及以上：全部默认（bf16）\n\n"
           "详情及各档所需内存（实测）：见 README 的 *VRAM presets* 和 *Resources* 两节。")
VRAM_AR_ZH = ("**显存预设**：AR 模型单独在 bf16 下约需 17 GB。显存不够时，把 AR 模型加载器的 `weight_dtype` 设为 "
              "fp8_e4m3fn（约 9 GB）；8 GB 显卡上其余部分由 ComfyUI 流式传输（或把 `device` 设为 cpu）。"
              "详情：README 的 *VRAM presets* 表。")
GGUF_HOWTO_ZH = ("**GGUF**：先安装 [ComfyUI-GGUF](https://github.com/city96/ComfyUI-GGUF)（ComfyUI-Manager 中搜索 "
                 "\"ComfyUI-GGUF\"），再生成一次文件：\n"
                 "```\nnexus-gen convert generation_decoder.bin --layout gguf --dtype Q8_0 "
                 f"--out models/diffusion_models/{GGUF_FILE}\n```\n"
                 "Unet Loader (GGUF) 加载量化后的 DiT；投影器加载器从同一个文件读取适配器；模型补丁为 DiT 加上 "
                 "Nexus-Gen 的流偏移。")
GROUPS_ZH = {"Load models": "加载模型", "Load model": "加载模型", "Prompt": "提示词",
             "Prompt: image + instruction": "提示：图像 + 指令", "Image + question": "图像 + 问题", "Answer": "回答",
             "Prompt: image embeddings": "提示：图像嵌入", "Prompt: text + image blend": "提示：文本与图像混合",
             "Sample": "采样", "Sample, upscale, sample again": "采样、放大、再采样", "Decode": "解码",
             "Prompt: text + style image (Redux)": "提示：文本 + 风格图像（Redux）",
             "Prompt, seed per worker": "提示词，每个工作节点一个种子", "Decode, collect": "解码、汇集"}
TEXTS_ZH = {  # widget values people read and change: prompts, instructions, questions
    "A red fox sitting in the snow at sunset.": "夕阳下，一只红狐狸坐在雪地里。",
    "Add a pair of sunglasses.": "给人物戴上一副墨镜。",
    "Turn it into a watercolor painting.": "把它变成一幅水彩画。",
    "Please give a brief description of the image.": "请简要描述这张图片。",
    "A castle on a hill at dawn.": "黎明时分，山丘上的一座城堡。",
    "A lighthouse on a rocky coast, stormy sea.": "暴风雨中的大海，岩石海岸上的一座灯塔。",
    "A cottage by a lake in autumn.": "秋天湖边的一座小屋。",
}


NOTES_ZH = {
    "nexus_gen_text_to_image": note(
        "Nexus-Gen：文生图",
        "用生成解码器、完全按参考实现的设置（其 sigma 序列、euler、cfg 3 加 T5 负面条件、种子 52）文生图：与 "
        "`nexus-gen generate` 得到相同的潜变量。AR 模型先写一段简短回复（显示在提示词下方）并预测 81 个图像嵌入，"
        "再由解码器的 FLUX DiT 画出图像。提示词用中文或英文均可（language 设为 zh、en 或 auto）。",
        files_md("generation_decoder.bin", t5=True, lang="zh"), vram=VRAM_ZH),
    "nexus_gen_text_to_image_gguf": note(
        "Nexus-Gen：文生图，GGUF DiT",
        "文生图工作流，生成解码器的 DiT 量化为 GGUF Q8_0（约 12.7 GB，而不是 24 GB）：适合 12 GB 显卡，最后一部分流式"
        "传输。8 GB 显卡请生成 Q4_0（6.7 GB：`--dtype Q4_0`），并在 Unet Loader (GGUF) 和投影器加载器中选择该文件。",
        files_md(None, t5=True, gguf=True, lang="zh"), vram=VRAM_ZH.replace("DiT = 解码器加载器", "DiT = Unet Loader (GGUF)"),
        extra=GGUF_HOWTO_ZH),
    "nexus_gen_edit": note(
        "Nexus-Gen：图像编辑",
        "用编辑解码器按指令编辑加载的图像：AR 模型预测编辑后图像的 81 个嵌入，解码器同时看到原图的 324 个参考嵌入"
        "和编辑用的位置编号；cfg 为 1，与参考实现一致。在“提示”分组中加载你自己的图像，并在其下方设置输出尺寸。",
        files_md("edit_decoder.bin", lang="zh"), vram=VRAM_ZH),
    "nexus_gen_edit_generation_decoder": note(
        "Nexus-Gen：用生成解码器编辑",
        "通过生成解码器编辑（只用 AR 模型的 81 个嵌入，没有参考嵌入）：比编辑解码器更自由，适合风格转换这类"
        "大幅度的概念性修改。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH),
    "nexus_gen_understanding": note(
        "Nexus-Gen：图像理解",
        "向 AR 模型提问关于图像的问题；回答在生成过程中实时显示在“图像理解”节点上，最后保存在 Preview Any 中。"
        "不接图像即为纯文本对话。",
        files_md(None, vae=False, lang="zh"), vram=VRAM_AR_ZH),
    "nexus_gen_variation": note(
        "Nexus-Gen：图像变体",
        "生成图像的变体：图像的 ViT 嵌入直接送入生成解码器（这正是它的训练任务），用原生 KSampler 采样。"
        "换一个种子即得到另一个变体。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH),
    "nexus_gen_mix_prompt_image_upscale": note(
        "Nexus-Gen：提示词 + 图像混合，放大",
        "参考实现做不到的玩法：把提示词的嵌入与图像的嵌入混合（slerp，权重 = 图像所占比例），用原生 KSampler 和 "
        "FluxGuidance 采样，再把潜变量放大 1.5 倍、以 denoise 0.45 再采样一次。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH),
}


LORA_HOWTO_ZH = ("**LoRA**：示例为 FLUX.1-Turbo-Alpha（diffusers 格式，为 8 步设计）：把它的 "
                 f"[diffusion_pytorch_model.safetensors]({hub(HF_TURBO, 'zh')}) 放到 `models/loras/`，命名为 `{LORA_FILE}`。"
                 "任何 ComfyUI/BFL、kohya 或 diffusers 格式的 FLUX.1-dev LoRA 用法相同；若 LoRA 适用于常见的 20-50 步，"
                 "请调高两个 KSampler 的步数。XLabs 格式的 LoRA（键名为 `double_blocks.N.processor...`）会被 ComfyUI "
                 "的加载器整个跳过，LoRA 节点上会提示：先用 "
                 "`nexus-gen convert-lora 文件 --out models/loras/新文件.safetensors` 转换一次。两个解码器是微调过的 FLUX.1-dev DiT，LoRA 的效果可能比在 FLUX.1-dev 上弱或不同。")
REDUX_HOWTO_ZH = ("**Redux 文件**：[flux1-redux-dev.safetensors]({redux})（需先接受其许可）放到 `models/style_models/`，"
                  "[sigclip_vision_patch14_384.safetensors]({siglip}) 放到 `models/clip_vision/`。"
                  ).format(redux=hub(HF_REDUX, "zh"), siglip=HF_SIGLIP)
NOTES_ZH.update({
    "nexus_gen_lora_hires": note(
        "Nexus-Gen + FLUX LoRA，高清二次采样",
        "通过 ComfyUI 自带的 LoRA 加载节点把 FLUX.1-dev LoRA 加到生成解码器上，再做第二遍：潜变量放大 1.5 倍，"
        "以 denoise 0.45 再采样一次。LoRA 节点位于解码器加载器和两个 KSampler 之间；投影器输出照常接到条件节点。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH, extra=LORA_HOWTO_ZH),
    "nexus_gen_redux": note(
        "Nexus-Gen + Redux：把图像的风格加到提示词上",
        "FLUX Redux 把加载的图像变成 729 个风格 token（先经 SigLIP，再经 Redux 的投影），“应用风格模型”把它们追加到"
        "提示词的 Nexus-Gen 条件之后。strength_type 为 attn_bias、强度 0.5 时以提示词为主；想要更多图像风格就把强度"
        "调向 1，或改用 multiply 得到完整的 Redux 效果。",
        files_md("generation_decoder.bin", lang="zh"), vram=VRAM_ZH, extra=REDUX_HOWTO_ZH),
})


DISTRIBUTED_HOWTO_ZH = (
    "**每个工作节点都需要同样的文件**，放在它自己的模型文件夹里（见上面的列表：AR 文件夹 16.6 GB，或单个 fp8 文件 "
    "8.9 GB；解码器 24 GB，或 GGUF Q4_0 6.8 GB；CLIP-L 和 AE 共 0.6 GB；T5 9.5 GB），也都要装本插件；输入图像由引擎"
    "发送给远程工作节点。**添加工作节点**：在该机器上用 `--listen --enable-cors-header` 启动 ComfyUI（主节点也需要 "
    "`--enable-cors-header`），然后在主节点的 Distributed 面板中点 *Add Worker*（本机的另一块 GPU 选 local，另一台"
    "机器选 remote 并填写地址和端口），再勾选它。提示词下方 AR 的回复是主节点自己的；图像理解工作流（只输出文本）"
    "只在主节点上运行，因为收集器只汇集图像。")
NOTES_ZH["nexus_gen_distributed"] = note(
    "Nexus-Gen 多 GPU 并行（ComfyUI-Distributed）",
    "文生图工作流同时在主节点和 [ComfyUI-Distributed](https://github.com/robertvoy/ComfyUI-Distributed) 的每个工作"
    "节点上运行，各用各的种子：每次运行每个进程出一张图，全部由主节点保存。Distributed Seed 同时接到 AR 的种子和噪声"
    "种子：主节点用设定的种子，工作节点 1 用种子 + 1，工作节点 2 用种子 + 2，依此类推，所以每张图都与单台 ComfyUI "
    "用该种子生成的图完全相同。Distributed Collector 在 VAE 解码之后汇集图像。照常运行即可：在 Distributed 面板中"
    "勾选了工作节点时，引擎会把工作流也发给它们（脚本可以发送到引擎的 `POST /distributed/queue`）；没有勾选时只在本机"
    "运行。",
    files_md("generation_decoder.bin", t5=True, lang="zh"), vram=VRAM_ZH, extra=DISTRIBUTED_HOWTO_ZH)


def chinese(wf: dict, name: str) -> dict:
    """The Chinese copy of a workflow spec: the same nodes and links."""
    graph = []
    for key, cls, widgets, inputs in wf["graph"]:
        widgets = {k: TEXTS_ZH.get(v, v) if isinstance(v, str) else v for k, v in widgets.items()}
        if cls == "NexusGenPromptEmbeds":
            widgets["language"] = "zh"
        graph.append((key, cls, widgets, inputs))
    return dict(graph=graph, layout={GROUPS_ZH[t]: cols for t, cols in wf["layout"].items()}, note=NOTES_ZH[name])
