"""Memory and time of DeepFloyd IF at its real sizes on a CPU machine, with random weights.

    OMP_NUM_THREADS=1 python benchmarks/if_memory.py run /tmp/if-mem --json if-memory.json
    rm -r /tmp/if-mem                   # about 13 GB: the checkpoints and the imported model

No IF weights are needed: the checkpoints are written here, in the diffusers layout that
``openimagen import-if`` reads (tests/if_testutil.py ``write_if_stage``, the writer of the
tiny test checkpoints), with IF's published configurations (:data:`UNETS`, :data:`T5_XXL`)
and random weights. Memory and speed depend on the shapes only. Every model is built on the
meta device, given its storage in the target dtype (``to_empty``) and filled in place, so no
step holds a second copy. Each step runs in its own process; its peak resident set is the
kernel's count for that process (``ru_maxrss``, from ``os.wait4``; for the steps run in
Python here also ``VmHWM`` of /proc/self/status and the largest ``RssAnon`` sampled every
50 ms, the part that is not memory-mapped weight files):

1. ``make``: IF-I-M and IF-II-M checkpoints, U-Nets and the T5-XXL encoder in fp16 (as the
   ``fp16`` files of the real checkpoints); stage II without a T5 copy.
2. ``import``: ``openimagen import-if IF-I-M IF-II-M model`` (the CLI).
3. ``generate``: ``openimagen.load(model, dtype=bfloat16)`` on the CPU, the T5 encoding of one
   prompt, then one image with stage I at ``--steps1`` and stage II at ``--steps2`` DDPM steps,
   timing every step (IF's defaults are 100 and 50).
4. ``cli``: ``openimagen generate --dtype bf16 --steps 2`` (and with ``--offload`` if
   ``--offload-too``).
5. ``unet``: the IF-I-XL (and IF-II-L) U-Net alone in bf16: built in memory, one forward pass
   at batch 2 (guidance doubles the batch), 77 T5 tokens.

``--t5-layers 2`` makes a quick trial run with a 2-layer T5 of XXL width; ``--only generate``
reruns a step on the checkpoints and model already there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

# tests/if_testutil.py writes the diffusers layout and makes the (made-up) T5 tokenizer
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PROMPT = "a photo of a corgi wearing a red hat"
GIB = 1024**3

# -- IF's configurations ------------------------------------------------------------------------
# google/t5-v1_1-xxl config.json (the T5 of every IF checkpoint's text_encoder/): encoder only.
T5_XXL = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.1,
    tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, use_cache=False,
)  # fmt: skip

# What every IF U-Net shares (unet/config.json of the IF checkpoints).
_IF_UNET = dict(
    act_fn="gelu", addition_embed_type="text", addition_embed_type_num_heads=64,
    attention_head_dim=64, cross_attention_norm="group_norm", encoder_hid_dim=4096,
    encoder_hid_dim_type="text_proj", mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    out_channels=6, resnet_time_scale_shift="scale_shift",
)  # fmt: skip


def stage_one_unet(width: int) -> dict:
    """IF-I-XL's unet/config.json (width 704) at another base width: channels width x
    (1, 2, 3, 4), 3 res blocks per level, cross-attention over width x 4 channels."""
    return dict(
        _IF_UNET, sample_size=64, in_channels=3, layers_per_block=3,
        block_out_channels=[width * m for m in (1, 2, 3, 4)], cross_attention_dim=width * 4,
        down_block_types=["ResnetDownsampleBlock2D"] + ["SimpleCrossAttnDownBlock2D"] * 3,
        up_block_types=["SimpleCrossAttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"],
    )  # fmt: skip


def stage_two_unet(width: int) -> dict:
    """IF-II-L's unet/config.json (width 160) at another base width: channels width x
    (1, 2, 4, 6, 8), res blocks (2, 2, 3, 5, 5), time embedding and cross-attention width x 8
    (IF's UNetModel: time_embed_dim = model_channels * max(channel_mult)), the noise level as
    a "timestep" class embedding, skip connections scaled by 1/sqrt(2)."""
    return dict(
        _IF_UNET, sample_size=256, in_channels=6, layers_per_block=[2, 2, 3, 5, 5],
        block_out_channels=[width * m for m in (1, 2, 4, 6, 8)], cross_attention_dim=width * 8,
        class_embed_type="timestep", time_embedding_act_fn="gelu", time_embedding_dim=width * 8,
        resnet_skip_time_act=True, resnet_out_scale_factor=1.4142271248762552,
        mid_block_scale_factor=1.4142271248762552,
        down_block_types=["ResnetDownsampleBlock2D"] * 3 + ["SimpleCrossAttnDownBlock2D"] * 2,
        up_block_types=["SimpleCrossAttnUpBlock2D"] * 2 + ["ResnetUpsampleBlock2D"] * 3,
    )  # fmt: skip


#: name -> (diffusers U-Net config, published parameter count). XL and II-L are the published
#: unet/config.json files (copies that name DeepFloyd/IF-I-XL-v1.0 and IF-II-L-v1.0 as their
#: source); the M configs were not found and are the same families at the base width whose
#: count is nearest the published one (192: 372M; the next valid width, 224, gives 485M).
UNETS = {
    "IF-I-M": (stage_one_unet(192), 400e6),
    "IF-I-XL": (stage_one_unet(704), 4.3e9),
    "IF-II-M": (stage_two_unet(96), 450e6),
    "IF-II-L": (stage_two_unet(160), 1.2e9),
}


# -- random models, built without a second copy -----------------------------------------------
def fill_random_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every floating tensor of ``module`` with N(0, 0.02^2), in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02, generator=generator)
    return module.eval().requires_grad_(False)


def random_unet(name: str, dtype: torch.dtype, seed: int = 0):
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**UNETS[name][0])
    return fill_random_(unet.to(dtype).to_empty(device="cpu"), seed)


def random_t5(dtype: torch.dtype, num_layers: int = 24, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(**{**T5_XXL, "num_layers": num_layers}, is_encoder_decoder=False)
    with torch.device("meta"):
        model = T5EncoderModel(config)
    model = model.to(dtype).to_empty(device="cpu")
    model.encoder.embed_tokens = model.shared  # to_empty unties the shared embedding
    return fill_random_(model, seed)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# -- measuring ----------------------------------------------------------------------------------
def status_kib(*fields: str) -> dict[str, int]:
    """Fields of /proc/self/status, in KiB."""
    out = dict.fromkeys(fields, 0)
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0])
    return out


class AnonSampler(threading.Thread):
    """The largest anonymous resident set seen, sampled every 50 ms. VmHWM also counts the
    pages of memory-mapped weight files (file-backed: the kernel may drop them), RssAnon
    only what the process itself allocated."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_anon_kib = 0

    def run(self) -> None:
        while True:
            anon = status_kib("RssAnon")["RssAnon"]
            self.peak_anon_kib = max(self.peak_anon_kib, anon)
            time.sleep(0.05)


SAMPLER = AnonSampler()


def peak_rss() -> dict:
    """This process's peak resident set in GiB: ru_maxrss and VmHWM (both KiB on Linux), and
    the largest anonymous part seen by :data:`SAMPLER` (if started)."""
    now = status_kib("VmHWM", "RssAnon", "RssFile")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_rss_gib": maxrss / 2**20, "vmhwm_gib": now["VmHWM"] / 2**20,
        "peak_anon_gib": max(SAMPLER.peak_anon_kib, now["RssAnon"]) / 2**20,
        "rss_anon_gib": now["RssAnon"] / 2**20, "rss_file_gib": now["RssFile"] / 2**20,
    }  # fmt: skip


def available_gib() -> float:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def measured(argv: list[str], need_gib: float, reserve_gib: float) -> dict:
    """Run ``argv`` as its own process; its wall time, exit status and peak RSS (wait4)."""
    free = available_gib()
    if free < need_gib + reserve_gib:
        return {"skipped": f"needs ~{need_gib:.0f} GiB + {reserve_gib:.0f} GiB spare, "
                           f"{free:.1f} GiB available"}  # fmt: skip
    print("$", " ".join(argv), flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {"command": argv, "wall_s": time.perf_counter() - start,
              "exit": child.returncode, "peak_rss_gib": usage.ru_maxrss / 2**20}  # fmt: skip
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:  # a step of this script reports its own numbers as one JSON line
        result.update(json.loads(lines[-1]))
    print(json.dumps({k: v for k, v in result.items() if k != "command"}), flush=True)
    return result


def report(values: dict) -> None:
    print(json.dumps({**values, **peak_rss()}), flush=True)


# -- the steps ----------------------------------------------------------------------------------
def step_make(root: Path, t5_layers: int) -> None:
    from if_testutil import tiny_t5, write_if_stage

    start = time.perf_counter()
    tokenizer = tiny_t5()[1]  # a made-up Unigram vocabulary: only shapes matter here
    t5 = random_t5(torch.float16, t5_layers)
    sizes = {"T5-XXL encoder": (count(t5), weight_bytes(t5))}
    unet = random_unet("IF-I-M", torch.float16, seed=1)
    sizes["IF-I-M"] = (count(unet), weight_bytes(unet))
    write_if_stage(root / "IF-I-M", 1, unet=unet, text_encoder=t5, tokenizer=tokenizer)
    del unet, t5
    unet = random_unet("IF-II-M", torch.float16, seed=2)
    sizes["IF-II-M"] = (count(unet), weight_bytes(unet))
    write_if_stage(root / "IF-II-M", 2, unet=unet, text_encoder=None, tokenizer=tokenizer)
    report({"seconds": time.perf_counter() - start, "sizes": sizes})


def step_generate(model: Path, steps1: int, steps2: int) -> None:
    import openimagen

    start = time.perf_counter()
    cascade = openimagen.load(model, device="cpu", dtype=torch.bfloat16)
    load_s = time.perf_counter() - start
    loaded = peak_rss()
    start = time.perf_counter()
    cascade.encode([PROMPT])
    encode_s = time.perf_counter() - start
    sampling = [s.replace(steps=n) for s, n in zip(cascade.sampling, (steps1, steps2), strict=True)]
    stamps = [time.perf_counter()]
    cascade.generate([PROMPT], [0], sampling=sampling,
                     progress=lambda done, total: stamps.append(time.perf_counter()))  # fmt: skip
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    # the first gap of each stage also holds the encoding (stage I) or the 64 -> 256 set-up
    report({
        "load_s": load_s, "after_load": loaded, "t5_encode_s": encode_s,
        "steps": [steps1, steps2], "total_s": stamps[-1] - stamps[0],
        "stage1_step_s": statistics.median(gaps[1:steps1]),
        "stage2_step_s": statistics.median(gaps[steps1 + 1:]),
        "step_s": gaps,
    })  # fmt: skip


def step_unet(name: str) -> None:
    start = time.perf_counter()
    unet = random_unet(name, torch.bfloat16)
    build_s = time.perf_counter() - start
    config = UNETS[name][0]
    size, channels = config["sample_size"], config["in_channels"]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, size, size, generator=generator).bfloat16()  # [2, C, R, R]
    text = torch.randn(2, 77, 4096, generator=generator).bfloat16()  # [2, 77, 4096]
    level = torch.full((2,), 250) if config.get("class_embed_type") else None
    start = time.perf_counter()
    with torch.inference_mode():
        unet(x, torch.full((2,), 500), encoder_hidden_states=text, class_labels=level)
    report({"params": count(unet), "weight_bytes": weight_bytes(unet), "build_s": build_s,
            "forward_s": time.perf_counter() - start})  # fmt: skip


def step_run(args: argparse.Namespace) -> None:
    """Every step in its own process, one after another; the results as JSON."""
    root = args.root
    me = [sys.executable, __file__]
    python_m = [sys.executable, "-m", "openimagen"]
    reserve = args.reserve_gib
    results: dict = {"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "t5_layers": args.t5_layers,
                     "mem_available_gib": available_gib()}  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "IF-II-M" / "model_index.json").is_file():
        results["make"] = measured([*me, "make", str(root), "--t5-layers", str(args.t5_layers)],
                                   11, reserve)  # fmt: skip
    model = root / "model"
    if not (model / "cascade.json").is_file():
        results["import"] = measured(
            [*python_m, "import-if", str(root / "IF-I-M"), str(root / "IF-II-M"), str(model)],
            3, reserve,
        )  # fmt: skip
    only = set(args.only)
    if "generate" in only:
        results["generate"] = measured(
            [*me, "generate", str(model), "--steps1", str(args.steps1),
             "--steps2", str(args.steps2)], 12, reserve,
        )  # fmt: skip
    cli_runs = ([], ["--offload"]) if args.offload_too else ([],)
    for offload in cli_runs if "cli" in only else ():
        out = root / f"cli{'-offload' if offload else ''}.png"
        results["cli" + "".join(offload)] = measured(
            [*python_m, "generate", PROMPT, "--model", str(model), "--device", "cpu",
             "--dtype", "bf16", "--steps", "2", "--quiet", "--overwrite", "--out", str(out),
             *offload], 12, reserve,
        )  # fmt: skip
    for name in args.unets if "unet" in only else ():
        results[name] = measured([*me, "unet", name], 2 * UNETS[name][1] / GIB + 1, reserve)
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    run = sub.add_parser("run", help="every step, each in its own process")
    run.add_argument("root", type=Path, help="working directory (about 13 GB)")
    run.add_argument("--json", type=Path, default=None, help="write the results here")
    run.add_argument("--steps1", type=int, default=10, help="stage I DDPM steps (IF: 100)")
    run.add_argument("--steps2", type=int, default=5, help="stage II DDPM steps (IF: 50)")
    run.add_argument("--unets", nargs="*", default=["IF-I-XL", "IF-II-L"], choices=list(UNETS),
                     help="U-Nets measured alone in bf16")  # fmt: skip
    run.add_argument(
        "--offload-too",
        action="store_true",
        help="run the CLI step with --offload as well (on a CPU it moves nothing)",
    )
    run.add_argument(
        "--reserve-gib",
        type=float,
        default=4.0,
        help="skip a step that would leave less memory available than this",
    )
    run.add_argument(
        "--only",
        nargs="*",
        default=["generate", "cli", "unet"],
        choices=["generate", "cli", "unet"],
        help="of the steps after make and import (done once), run only these",
    )
    make = sub.add_parser("make", help="write IF-I-M and IF-II-M checkpoints")
    make.add_argument("root", type=Path)
    for p in (run, make):
        p.add_argument("--t5-layers", type=int, default=24, help="T5 depth (XXL: 24)")
    gen = sub.add_parser("generate", help="load, encode and sample one image in bf16")
    gen.add_argument("model", type=Path)
    gen.add_argument("--steps1", type=int, default=10)
    gen.add_argument("--steps2", type=int, default=5)
    one = sub.add_parser("unet", help="one U-Net alone in bf16: build and one forward pass")
    one.add_argument("name", choices=list(UNETS))
    sub.add_parser("sizes", help="parameter counts of the configs, on the meta device")
    args = parser.parse_args(argv)
    if args.step in ("make", "generate", "unet"):
        SAMPLER.start()
    if args.step == "run":
        step_run(args)
    elif args.step == "make":
        step_make(args.root, args.t5_layers)
    elif args.step == "generate":
        step_generate(args.model, args.steps1, args.steps2)
    elif args.step == "unet":
        step_unet(args.name)
    else:
        from diffusers import UNet2DConditionModel
        from transformers import T5Config, T5EncoderModel

        with torch.device("meta"):
            t5 = T5EncoderModel(T5Config(**T5_XXL, is_encoder_decoder=False))
            print(f"T5-XXL encoder: {count(t5) / 1e9:.3f}B (published 4.8B)")
            for name, (config, published) in UNETS.items():
                n = count(UNet2DConditionModel(**config))
                print(f"{name}: {n / 1e9:.3f}B (published {published / 1e9:.2g}B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
