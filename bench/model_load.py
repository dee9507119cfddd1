"""Model load time: straight from the GGUF file vs from the lab's safetensors cache.

Each measurement is a fresh Python process (median of 3), timed after the imports, for the
tokenizer plus the model. Prints a table with the ratio and each process's peak RSS.

    .venv/bin/python bench/model_load.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this folder would come first on the path and bench/tokenizers.py would hide
# the `tokenizers` library: put the project root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

MODELS = ("smollm2-135m-instruct", "gemma-3-270m")


def child(mode: str, name: str) -> None:
    import transformers

    # "After imports": the modeling code and the GGUF readers are imported before the clock starts,
    # for both ways of loading alike.
    import transformers.integrations.ggml  # noqa: F401
    import transformers.modeling_gguf_pytorch_utils  # noqa: F401
    import transformers.models.gemma3.modeling_gemma3  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmlab import assets, models
    from llmlab.registry import resolve_model

    transformers.utils.logging.disable_progress_bar()
    spec = resolve_model(name)
    started = time.perf_counter()
    if mode == "gguf":
        path = assets.pack_path(spec.pack, spec.gguf_file)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        loaded = models.load(name)
        tokenizer, model = loaded.tokenizer, loaded.model
    seconds = time.perf_counter() - started
    assert len(tokenizer) > 0 and model is not None
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def measure(mode: str, name: str, repeats: int) -> tuple[float, float]:
    times, peaks = [], []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, __file__, "--child", mode, name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        times.append(result["seconds"])
        peaks.append(result["peak_mb"])
    return statistics.median(times), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "NAME"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    for name in MODELS:
        gguf_s, gguf_mb = measure("gguf", name, args.repeats)
        cached_s, cached_mb = measure("cached", name, args.repeats)
        rows.append((name, gguf_s, cached_s, gguf_s / cached_s, gguf_mb, cached_mb))
    header = f"{'model':<24}{'GGUF load s':>12}{'cached s':>10}{'ratio':>8}{'GGUF RSS MB':>13}{'cached RSS MB':>15}"
    print(f"Load time, tokenizer + model, after imports (median of {args.repeats} fresh processes)")
    print(header)
    print("-" * len(header))
    for name, gguf_s, cached_s, ratio, gguf_mb, cached_mb in rows:
        print(
            f"{name:<24}{gguf_s:>12.2f}{cached_s:>10.2f}{ratio:>7.1f}x{gguf_mb:>13.0f}{cached_mb:>15.0f}"
        )


if __name__ == "__main__":
    from llmlab.cpu import print_header

    if "--child" not in sys.argv:  # a child process prints only its figures
        print_header()
    main()
