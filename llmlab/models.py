"""Loading models: offline GGUF packs converted once to safetensors, or Hub ids.

transformers can read a GGUF file directly, but it de-quantizes every tensor on every load
(about 17 s for SmolLM2 and 47 s for Gemma 3 on two cores). So the first load converts the
model and its tokenizer into the cache (`<LLMLAB_HOME>/models/<name>/`) and later loads read the
safetensors file, which is memory-mapped and takes a fraction of a second.

    >>> loaded = load("smollm2-135m-instruct")          # doctest: +SKIP
    >>> loaded.facts.kind, loaded.facts.parameters       # doctest: +SKIP
    ('chat', 134515008)
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmlab import assets, hub_limits
from llmlab.converted import CONVERSION_FORMAT, STAMP, converted_dir, is_current, source_sha
from llmlab.registry import ModelSpec, hub_available, mark_hub_unreachable, resolve_model

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = ("float32", "bfloat16")
HUB_TIMEOUT = 10.0  # seconds for the one request that checks a Hub model before downloading


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why in plain words."""


class DamagedCopyError(ModelLoadError):
    """The converted copy of an offline model cannot be read; `remove_converted` and load again."""


@dataclass(frozen=True)
class ModelFacts:
    name: str
    title: str
    family: str
    kind: str  # "base" or "chat"
    source: str  # "offline" or "hub"
    parameters: int  # unique parameters (tied embeddings counted once)
    dtype: str
    context_length: int
    vocab_size: int
    has_chat_template: bool
    architecture: str  # the transformers class, e.g. "Gemma3ForCausalLM"
    location: str  # folder or Hub id the weights came from


@dataclass
class LoadedModel:
    """A model in eval mode, its tokenizer, and facts about both. Shared: never mutate it."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    facts: ModelFacts

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _source_sha(spec: ModelSpec) -> str:
    assert spec.pack and spec.gguf_file
    return source_sha(spec.pack, spec.gguf_file)


def is_converted(name: str) -> bool:
    spec = resolve_model(name)
    if spec.source != "offline":
        return False
    assert spec.pack and spec.gguf_file
    return is_current(spec.name, spec.pack, spec.gguf_file)


def convert(name: str, progress: assets.Progress | None = None) -> Path:
    """Convert an offline model's GGUF file to a safetensors folder (once; later calls return)."""
    spec = resolve_model(name)
    if spec.source != "offline":
        raise ValueError(f"model={name!r} is a Hub model; only offline models are converted")
    target = converted_dir(spec.name)
    if is_converted(spec.name):
        return target
    report = progress or (lambda fraction, message: None)
    report(0.0, f"{spec.name}: checking the offline pack")
    gguf_path = assets.pack_path(spec.pack, spec.gguf_file)  # type: ignore[arg-type]
    # The staging folder is made first: a read-only cache is reported at once, not after the
    # long de-quantization.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    except OSError as error:
        if assets.is_not_writable(error):
            raise assets.not_writable(error) from error
        raise
    try:
        _convert_into(staging, spec, gguf_path, report)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if assets.is_not_writable(error):
            raise assets.not_writable(error) from error  # type: ignore[arg-type]
        raise
    report(1.0, f"{spec.name}: converted")
    return target


def remove_converted(name: str) -> None:
    """Delete an offline model's converted copy (the next load converts it again)."""
    spec = resolve_model(name)
    if spec.source == "offline":
        shutil.rmtree(converted_dir(spec.name), ignore_errors=True)


def _convert_into(staging: Path, spec: ModelSpec, gguf_path: Path, report: assets.Progress) -> None:
    """De-quantize the GGUF file and write tokenizer, safetensors and stamp into `staging`.

    One step at a time, each freed before the next: the tokenizer, then the config, then the
    weights one tensor at a time (`llmlab.conversion`), so the peak stays near that of reading
    the GGUF metadata (Gemma 3: about 1 GB, instead of 3.3 GB for a whole float32 model).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    from llmlab import conversion, memory

    hf_logging.disable_progress_bar()  # our own progress callback reports the steps
    started = time.perf_counter()
    report(0.1, f"{spec.name}: reading the tokenizer from GGUF")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(staging)
    del tokenizer
    memory.release_memory()
    report(0.3, f"{spec.name}: reading the model's configuration from GGUF")
    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    memory.release_memory()
    with torch.device("meta"):  # only the class and its defaults, no weights
        skeleton = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # What `save_pretrained` of the loaded model wrote: its class, its dtype, and no GGUF
    # quantization marker (the weights are plain float32 tensors).
    config.architectures = [type(skeleton).__name__]
    config.dtype = torch.float32
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = spec.name
    generation = skeleton.generation_config or GenerationConfig.from_model_config(config)
    del skeleton
    report(0.4, f"{spec.name}: de-quantizing the weights from GGUF (a one-time step)")
    conversion.write_safetensors(
        gguf_path,
        config,
        staging,
        lambda fraction: report(0.4 + 0.55 * fraction, f"{spec.name}: writing safetensors"),
    )
    config.save_pretrained(staging)
    generation.save_pretrained(staging)
    stamp = {
        "format": CONVERSION_FORMAT,
        "source": f"{spec.pack}/{spec.gguf_file}",
        "source_sha256": _source_sha(spec),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (staging / STAMP).write_text(json.dumps(stamp, indent=2))
    # mkdtemp makes an owner-only folder: open it (and its files) as the umask allows.
    assets.shareable(staging, folder=True)
    for path in staging.iterdir():
        assets.shareable(path)


def load_tokenizer_dir(folder: Path) -> PreTrainedTokenizerBase:
    """Load a saved fast tokenizer quickly.

    `AutoTokenizer.from_pretrained` in transformers 5 parses tokenizer.json in Python and rebuilds
    the tokenizer from its vocabulary and merges; for Gemma 3 (262,144 tokens, 514,906 merges) that
    is ~3.8 s. Handing the file straight to the Rust `tokenizers` library gives the same tokenizer
    (same ids, same special tokens, same chat template) in about a third of the time.
    """
    from transformers import PreTrainedTokenizerFast

    config = json.loads((folder / "tokenizer_config.json").read_text())
    keep = (
        "bos_token",
        "eos_token",
        "unk_token",
        "pad_token",
        "mask_token",
        "sep_token",
        "cls_token",
        "add_bos_token",
        "add_eos_token",
        "clean_up_tokenization_spaces",
        "model_max_length",
        "padding_side",
    )
    kwargs: dict[str, Any] = {k: config[k] for k in keep if k in config}
    template_file = folder / "chat_template.jinja"
    if template_file.is_file():
        kwargs["chat_template"] = template_file.read_text()
    elif config.get("chat_template"):
        kwargs["chat_template"] = config["chat_template"]
    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **kwargs)


def _torch_dtype(dtype: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _facts(spec: ModelSpec, model: Any, tokenizer: Any, dtype: str, location: str) -> ModelFacts:
    config = model.config
    context = (
        getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0) or 0
    )
    return ModelFacts(
        name=spec.name,
        title=spec.title,
        family=spec.family or getattr(config, "model_type", ""),
        kind="chat" if getattr(tokenizer, "chat_template", None) else spec.kind,
        source=spec.source,
        parameters=sum(p.numel() for p in model.parameters()),  # shared tensors appear once
        dtype=dtype,
        context_length=int(context),
        vocab_size=int(config.vocab_size),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        architecture=type(model).__name__,
        location=location,
    )


def load(name: str, dtype: str = "float32", progress: assets.Progress | None = None) -> LoadedModel:
    """Load a model by name (offline pack or Hub id) in eval mode with gradients off.

    Raises ValueError for an unknown name or dtype or a Hub model this server does not load
    (`hub_limits.HubModelRefused`, decided before any download), ModelLoadError when loading
    fails (pack missing, Hub unreachable, a broken file), each with a plain message.
    """
    spec = resolve_model(name)
    torch_dtype = _torch_dtype(dtype)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_grad_enabled(False)
    if spec.source == "offline":
        try:
            folder = convert(spec.name, progress)
        except assets.AssetError as error:
            raise ModelLoadError(str(error)) from error
        try:
            tokenizer = load_tokenizer_dir(folder)
            if torch_dtype == torch.float32:  # memory-mapped: the file's pages are the weights
                model = AutoModelForCausalLM.from_pretrained(
                    str(folder), dtype=torch_dtype, use_safetensors=True
                )
            else:
                model = load_cast(folder, torch_dtype)
        except Exception as error:  # safetensors, tokenizers and JSON each raise their own kind
            raise DamagedCopyError(
                f"The converted copy of {spec.name} in {folder} could not be read "
                f"({_first_line(error)}); delete that folder and it will be converted again."
            ) from error
        location = str(folder)
    else:
        if not hub_available():
            raise ModelLoadError(
                f"{spec.name} comes from the Hugging Face Hub, which is not reachable from here; "
                "choose an offline model instead."
            )
        # The size is checked before anything is downloaded (HubModelRefused when too large).
        hub_limits.check_hub_model(str(spec.hub_id), _check_on_hub(str(spec.hub_id)))
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec.hub_id)
            model = AutoModelForCausalLM.from_pretrained(
                spec.hub_id, dtype=torch_dtype, use_safetensors=True
            )
        except Exception as error:  # the Hub raises many kinds; all mean "could not load"
            raise ModelLoadError(
                f"Could not load {spec.hub_id} from the Hub: {_first_line(error)}"
            ) from error
        location = str(spec.hub_id)
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec.name, model, tokenizer, _facts(spec, model, tokenizer, dtype, location))


# A float32 tensor is read and cast this many bytes at a time (Gemma 3's embedding table alone is
# 671 MB in float32).
CAST_SLICE_BYTES = 16 * 1024**2


def load_cast(folder: Path, dtype: torch.dtype) -> PreTrainedModel:
    """The converted float32 model of `folder` in `dtype`, read a slice of rows at a time.

    `from_pretrained(dtype=torch.bfloat16)` memory-maps the float32 file and casts each tensor:
    every page of the file becomes resident beside the copy (Gemma 3: 1,072 + 536 MB at the
    peak). Here the file is read with plain reads into one small buffer and each slice is cast
    straight into the model's own tensors, so the peak is the copy and one slice. The numbers
    are the same: `copy_` casts as `.to(dtype)` does.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    from llmlab import conversion

    config = AutoConfig.from_pretrained(str(folder))
    with no_init_weights():  # every weight is read below; random values first would be wasted
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    targets = model.state_dict(keep_vars=True)
    written: set[int] = set()
    path = folder / conversion.SAFETENSORS_NAME
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        header.pop("__metadata__", None)
        base = 8 + length
        for name, entry in header.items():
            if name not in targets or entry["dtype"] != "F32":
                raise ValueError(f"{path.name}: tensor {name!r} ({entry['dtype']}) is not expected")
            target = targets[name].data
            start, end = entry["data_offsets"]
            rows = target.reshape(target.shape[0], -1) if target.dim() else target.reshape(1, 1)
            if (end - start) != rows.numel() * 4:
                raise ValueError(f"{path.name}: tensor {name!r} has the wrong size")
            step = max(1, CAST_SLICE_BYTES // max(1, rows.shape[1] * 4))
            handle.seek(base + start)
            for first in range(0, rows.shape[0], step):
                part = rows[first : first + step]
                buffer = bytearray(part.numel() * 4)
                handle.readinto(buffer)
                part.copy_(torch.frombuffer(buffer, dtype=torch.float32).view(part.shape))
            written.add(target.data_ptr())
    model.tie_weights()
    unread = [n for n, p in model.named_parameters() if p.data_ptr() not in written]
    if unread:  # never serve weights that were not read
        raise ValueError(f"{path.name} has no tensor for {', '.join(unread[:3])}")
    return model


# What a load needs beyond its weights: the first forward passes' activations and the
# allocator's slack (SmolLM2 float32: RSS 436 -> 985 MB with a 538 MB file after one forward).
LOAD_MARGIN_BYTES = 64 * 1024**2
# A first conversion's peak above the process before it, per byte of GGUF file: reading the
# metadata (vocabulary, merges) through transformers dominates. Measured with `llmlab.conversion`
# in a fresh process (about 300 MB before it): SmolLM2 (98 MB file) peaked at 606 MB, Gemma 3
# (253 MB) at 1,048 MB; the whole-model conversion before it peaked at 1,240 and 3,322 MB.
CONVERSION_BYTES_PER_GGUF_BYTE = 3


def memory_needed(name: str, dtype: str = "float32") -> int:
    """About how many bytes of RSS loading `name` in `dtype` adds to this process (its peak).

    A float32 load memory-maps the converted safetensors file, and every page of it becomes
    resident once the model runs: the file's size. Another dtype reads that file a slice at a
    time into its copy (`load_cast`): the copy's size. A model not yet converted needs its
    conversion's peak first, when that is higher. A Hub model's size comes from the Hub's
    metadata (one request, as `load` makes); transformers reads it whole and casts it, so both
    copies are there at the peak.

    >>> memory_needed("smollm2-135m-instruct", "float16")
    Traceback (most recent call last):
    ...
    ValueError: dtype='float16' is not supported; allowed: float32, bfloat16
    """
    spec = resolve_model(name)
    size = _torch_dtype(dtype).itemsize
    if spec.source == "offline":
        folder = converted_dir(spec.name)
        files = sorted(folder.glob("*.safetensors")) if is_converted(spec.name) else []
        if files:
            float32_bytes = sum(path.stat().st_size for path in files)
            converting = 0
        else:
            from llmlab import conversion

            try:
                gguf_path = assets.pack_path(spec.pack, spec.gguf_file)  # type: ignore[arg-type]
            except assets.AssetError as error:
                raise ModelLoadError(str(error)) from error
            float32_bytes = conversion.float32_bytes(gguf_path)
            converting = CONVERSION_BYTES_PER_GGUF_BYTE * gguf_path.stat().st_size
    else:
        if not hub_available():
            return LOAD_MARGIN_BYTES  # `load` says why it cannot; nothing will be loaded
        hub_id = str(spec.hub_id)
        parameters = hub_limits.check_hub_model(hub_id, _check_on_hub(hub_id)).parameters
        float32_bytes = 4 * int(parameters or 0)
        converting = 0
    weights = float32_bytes // 4 * size
    # A Hub model in another dtype: the float32 weights are read whole beside the copy.
    reading = float32_bytes if size != 4 and spec.source != "offline" else 0
    return max(converting, weights + reading) + LOAD_MARGIN_BYTES


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_on_hub(hub_id: str) -> Any:
    """Ask the Hub once, without retries, whether it answers and has the model; its answer
    (a `ModelInfo` with the file sizes) tells `hub_limits` how large the model is.

    The downloads in transformers retry with back-off (about 25 s per file when the Hub has gone
    away since `hub_available` looked): a single quick request says so at once instead, and the
    Hub is then taken as unreachable, so pickers stop offering Hub models for a while.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return HfApi().model_info(hub_id, timeout=HUB_TIMEOUT, files_metadata=True)
    except RepositoryNotFoundError as error:
        raise ModelLoadError(
            f"There is no public model {hub_id!r} on the Hugging Face Hub; check the spelling "
            "(org/model-name) or choose an offline model."
        ) from error
    except Exception as error:  # connection refused, DNS, timeouts, HTTP 5xx
        mark_hub_unreachable()
        raise ModelLoadError(
            f"{hub_id} comes from the Hugging Face Hub, which did not answer "
            f"({_first_line(error)}); choose an offline model, or try again later."
        ) from error


def prepare_offline(progress: assets.Progress | None = None) -> list[Path]:
    """Fetch and convert every offline model (what `python -m llmlab setup` runs)."""
    from llmlab.registry import MODELS

    names = [spec.name for spec in MODELS.values() if spec.source == "offline"]
    return [
        convert(name, assets.part_progress(progress, i, len(names))) for i, name in enumerate(names)
    ]
