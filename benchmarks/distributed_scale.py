"""What N ComfyUI-Distributed workers give, on paper: images per hour by card, and what each worker costs.

Per-image seconds come from the VRAM presets model (vram_presets.py: exact weight bytes of the full-size models, a
stated compute and PCIe model; PREDICTED, not yet measured on a GPU). The engine runs the whole workflow in every
process (master + N workers) with its own seed and waits for all of them before the master saves the images, so a
run of identical cards makes N + 1 images in one image's time; with mixed cards a run takes the slowest card's time.
The per-worker costs are the published file sizes and the RAM measured on this project's CPU machine (README,
*Resources*). Run: python benchmarks/distributed_scale.py
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vram_presets import CARDS, PRESETS, models, predicted  # noqa: E402

WORKERS = (0, 1, 2, 4, 8)
# Files per preset, in GB on disk (README, *Where the files go* and *VRAM presets*): what a worker must hold.
AR_FOLDER, AR_FP8_FILE = 16.6, 8.9
DECODER_BIN, DIT_GGUF_Q4 = 24.0, 6.8
T5_FP16, T5_FP8 = 9.5, 4.9
CLIP_AE = 0.6
# The master receives each worker image as an uncompressed PNG (the engine's collector, compress_level 0).
PNG_MB = {512: 512 * 512 * 3 / 1e6, 1024: 1024 * 1024 * 3 / 1e6}
# Peak RAM measured on the CPU (everything in RAM: an upper bound for a GPU worker), README *VRAM presets*.
RAM_MEASURED = {8: "18.6 GB", 12: "24.3 GB", 16: "24.3 GB", 24: "over 24 GB (not measured)", 48: "not measured"}


def worker_disk(vram: int) -> tuple[float, float]:
    """(GB a worker keeps, GB it downloads from a hub) for a card's preset; the converted files (one fp8 AR file,
    a GGUF) can be copied from the master instead of downloading the originals and converting them again."""
    ar_choice, _dev, dit_choice, t5_choice = PRESETS[vram]
    fp8_ar = ar_choice.startswith("fp8")
    first_dit = dit_choice.split(" or ")[0]  # the preset's first choice, as the time model takes it
    keeps = (AR_FP8_FILE if fp8_ar else AR_FOLDER) + (DIT_GGUF_Q4 if "GGUF" in first_dit else DECODER_BIN)
    keeps += (T5_FP8 if "fp8" in t5_choice else T5_FP16) + CLIP_AE
    download = AR_FOLDER + DECODER_BIN + (T5_FP8 if "fp8" in t5_choice else T5_FP16) + CLIP_AE
    return keeps, download


def main(argv=None) -> int:
    ar, d, *_rest, flops = models()
    print(f"Machine (for the record; nothing here is timed): {platform.machine()}, Python {platform.python_version()}")
    print("\nImages per hour, text to image at the reference's settings (50 steps, cfg 3), PREDICTED from the presets "
          "model; master + N workers of the same card:")
    print("| card (VRAM) | s/image 512² | " + " | ".join(f"+{n} workers" if n else "alone" for n in WORKERS) + " | 1024²: s/image | "
          + " | ".join(f"+{n} workers" if n else "alone" for n in WORKERS) + " |")
    print("|---|---|" + "---|" * len(WORKERS) + "---|" + "---|" * len(WORKERS))
    for vram, card, tflops, tbps in CARDS:
        rows = predicted(vram, tflops, tbps, ar, d, flops)
        cells = []
        for size in (512, 1024):
            s = rows[size][2]
            cells.append(f"{s:.0f}")
            cells += [f"{(n + 1) * 3600 / s:.0f}" for n in WORKERS]
        print(f"| {card} ({vram} GB) | " + " | ".join(cells) + " |")
    print("\nWhat each worker costs (the preset of its card):")
    print("| card (VRAM) | disk it keeps | download from a hub (or copy the converted files from the master) | "
          "RAM at the peak (measured, CPU) |")
    print("|---|---|---|---|")
    for vram, card, _tflops, _tbps in CARDS:
        keeps, download = worker_disk(vram)
        print(f"| {card} ({vram} GB) | {keeps:.1f} GB | {download:.1f} GB ({keeps:.1f} GB copied) | "
              f"{RAM_MEASURED[vram]} |")
    print(f"\nPer image the master receives one uncompressed PNG: {PNG_MB[512]:.1f} MB at 512², {PNG_MB[1024]:.1f} MB "
          f"at 1024² (8 workers at 1024²: {8 * PNG_MB[1024]:.0f} MB per run, {8 * PNG_MB[1024] * 8 / 1000:.2f} s "
          "on a 1 Gbit/s link).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
