"""GGUF -> safetensors, one tensor at a time, so a conversion needs little more memory than the
largest tensor.

`AutoModelForCausalLM.from_pretrained(..., gguf_file=...)` de-quantizes every tensor into a dict,
copies them into a model, and `save_pretrained` then writes them: Gemma 3 270M's float32 weights
(1.07 GB) were in memory about three times over, and its conversion peaked at 3,277 MB. Here the
GGUF file is memory-mapped, each tensor is de-quantized (a large one in slices of rows), given
the same name and the same per-architecture fix as transformers' GGUF loader gives it
(`transformers.modeling_gguf_pytorch_utils`: Llama's q/k rows put back in order, Gemma's norms
stored as `w + 1`), and written to disk before the next one is read. The values are exactly the
float32 tensors that transformers' own load gives (`tests/test_conversion.py` compares every one).

The safetensors layout is simple enough to write directly: 8 bytes of header length, a JSON
header giving each tensor's dtype, shape and byte range, then the raw little-endian data. The
data goes to a side file first (shapes are known only once each tensor is processed) and is then
appended after the header.

>>> blob = header_bytes({"w": ("F32", (2, 3), 0, 24)})
>>> length = int.from_bytes(blob[:8], "little")
>>> length % 8, len(blob) == 8 + length, json.loads(blob[8:])["w"]
(0, True, {'dtype': 'F32', 'shape': [2, 3], 'data_offsets': [0, 24]})
"""

from __future__ import annotations

import itertools
import json
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

SAFETENSORS_NAME = "model.safetensors"
# A tensor larger than this (float32 bytes) is de-quantized in slices of rows: Gemma 3's embedding
# table alone is 671 MB in float32, and de-quantizing it whole takes several times that.
SLICE_BYTES = 32 * 1024**2
Progress = Callable[[float], None]


def header_bytes(entries: dict[str, tuple[str, tuple[int, ...], int, int]]) -> bytes:
    """The safetensors header for `{name: (dtype, shape, start, end)}` (offsets into the data),
    padded with spaces to a multiple of 8 bytes as the format recommends."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for name, (dtype, shape, start, end) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [start, end]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


# GGUF metadata value types of a fixed size (struct format), and the two others: string, array.
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_tensor_table(blob: Any) -> tuple[str, list[tuple[str, tuple[int, ...], int, int]], int]:
    """A GGUF file's architecture, its tensors as `(name, shape, ggml type, offset)` (shape in
    torch order, offset from the data section) and where the data section starts.

    The metadata is walked without keeping it (a vocabulary is hundreds of thousands of
    strings), except the two keys needed here. `blob` is the file's bytes (a memory map).
    """

    def unpack(fmt: str, pos: int) -> tuple[tuple, int]:
        return struct.unpack_from("<" + fmt, blob, pos), pos + struct.calcsize("<" + fmt)

    def string(pos: int) -> tuple[str, int]:
        (length,), pos = unpack("Q", pos)
        return bytes(blob[pos : pos + length]).decode("utf-8"), pos + length

    def skip(value_type: int, pos: int) -> tuple[Any, int]:
        if value_type in _FIXED:
            (value,), pos = unpack(_FIXED[value_type], pos)
            return value, pos
        if value_type == _STRING:
            return string(pos)
        if value_type == _ARRAY:
            (element_type, count), pos = unpack("IQ", pos)
            if element_type in _FIXED:
                return None, pos + count * struct.calcsize(_FIXED[element_type])
            for _ in range(count):
                _, pos = skip(element_type, pos)
            return None, pos
        raise ValueError(f"GGUF metadata value type {value_type} is not one of the format's")

    if bytes(blob[:4]) != b"GGUF":
        raise ValueError("not a GGUF file (it does not start with b'GGUF')")
    (version, tensor_count, key_count), pos = unpack("IQQ", 4)
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported; allowed: 2, 3")
    kept: dict[str, Any] = {}
    for _ in range(key_count):
        key, pos = string(pos)
        (value_type,), pos = unpack("I", pos)
        value, pos = skip(value_type, pos)
        if key in ("general.architecture", "general.alignment"):
            kept[key] = value
    tensors = []
    for _ in range(tensor_count):
        name, pos = string(pos)
        (dims,), pos = unpack("I", pos)
        shape, pos = unpack(f"{dims}Q", pos)
        (ggml_type, offset), pos = unpack("IQ", pos)
        # ggml lists dimensions fastest-moving first; torch and numpy the other way round
        tensors.append((name, tuple(reversed(shape)), ggml_type, offset))
    alignment = kept.get("general.alignment") or 32
    return kept["general.architecture"], tensors, -(-pos // alignment) * alignment


def _tensor_views(
    gguf_path: Path,
) -> tuple[str, list[tuple[str, Any, tuple[int, ...], np.ndarray]]]:
    """The file's architecture, and `(name, ggml type, shape, raw data)` per tensor, the data a
    read-only memory map shaped as `gguf.GGUFReader` shapes it (values, or rows of blocks)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import quant_shape_to_byte_shape

    # GGUFReader's element types for the tensors stored as values rather than blocks.
    plain = {
        GGMLQuantizationType.F16: np.float16,
        GGMLQuantizationType.F32: np.float32,
        GGMLQuantizationType.F64: np.float64,
        GGMLQuantizationType.I8: np.int8,
        GGMLQuantizationType.I16: np.int16,
        GGMLQuantizationType.I32: np.int32,
        GGMLQuantizationType.I64: np.int64,
    }
    blob = np.memmap(gguf_path, mode="r", dtype=np.uint8)
    architecture, table, data_start = read_tensor_table(blob)
    views = []
    for name, shape, type_id, offset in table:
        ggml_type = GGMLQuantizationType(type_id)
        block_size, type_size = GGML_QUANT_SIZES[ggml_type]
        start = data_start + offset
        raw = blob[start : start + int(np.prod(shape)) * type_size // block_size]
        if ggml_type in plain:
            data = raw.view(plain[ggml_type]).reshape(shape)
        else:
            data = raw.reshape(quant_shape_to_byte_shape(shape, ggml_type))
        views.append((name, ggml_type, shape, data))
    return architecture, views


def float32_bytes(gguf_path: Path) -> int:
    """The size of the file's tensors in float32, read from its tensor table alone."""
    _, table, _ = read_tensor_table(np.memmap(gguf_path, mode="r", dtype=np.uint8))
    return 4 * sum(int(np.prod(shape)) for _, shape, _, _ in table)


def _slices(data: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """`data` (a tensor of `shape` in its stored form) in slices of whole rows, each about
    `SLICE_BYTES` once de-quantized; a quantized block never spans two rows, so each slice
    de-quantizes on its own. A small tensor is one slice, `data` itself."""
    if len(shape) < 2 or int(np.prod(shape)) * 4 <= SLICE_BYTES:
        return [data]
    step = max(1, SLICE_BYTES // (int(np.prod(shape[1:])) * 4))
    return [data[first : first + step] for first in range(0, shape[0], step)]


def write_safetensors(
    gguf_path: Path, config: Any, folder: Path, progress: Progress | None = None
) -> list[str]:
    """De-quantize `gguf_path` into `folder/model.safetensors` (float32) for a model of `config`
    (the transformers config read from the same file); returns the names written, in order."""
    import torch
    from gguf import dequantize
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    architecture, views = _tensor_views(gguf_path)
    # The model's tensor names, from a model on the meta device (shapes only, no memory).
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config.to_dict())
    names = get_gguf_hf_weights_map(skeleton, processor)
    # Some processors file a tensor under `parsed["tensors"]` themselves (GPT-2's lm_head, mixture
    # of experts); those are written at the end.
    parsed: dict[str, dict[str, Any]] = {"tensors": {}}
    del skeleton

    entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    data_path = folder / (SAFETENSORS_NAME + ".data")
    written = 0
    with open(data_path, "wb") as data_file:

        def write(hf_name: str, parts: Iterator[np.ndarray]) -> None:
            """Append a tensor given as slices of rows; its shape is the slices' rows stacked."""
            nonlocal written
            start, rows, tail = written, 0, ()
            for part in parts:
                part = np.ascontiguousarray(part, dtype="<f4")
                data_file.write(memoryview(part).cast("B"))
                written += part.nbytes
                rows, tail = rows + (part.shape[0] if part.ndim else 1), part.shape[1:]
                shape = (rows, *tail) if part.ndim else ()
            entries[hf_name] = ("F32", tuple(int(n) for n in shape), start, written)

        tensors = views
        for index, (name, ggml_type, shape, data) in enumerate(tensors):
            parts = _slices(data, shape)
            first = dequantize(parts[0], ggml_type)
            kwargs = {"tensor_key_mapping": names, "parsed_parameters": parsed}
            result = processor.process(weights=first, name=name, **kwargs)
            if len(parts) > 1 and result.weights is first and result.name == name:
                # The processor leaves this tensor alone (its fixes go by name): stream it.
                if name in names:
                    rest = (dequantize(part, ggml_type) for part in parts[1:])
                    write(names[name], itertools.chain([first], rest))
            else:
                if len(parts) > 1:  # its fix needs the whole tensor, as transformers gives it
                    del first, result
                    first = dequantize(data, ggml_type)
                    result = processor.process(weights=first, name=name, **kwargs)
                if result.name in names:
                    write(names[result.name], iter([result.weights]))
            del first, result
            if progress:
                progress((index + 1) / len(tensors))
        for hf_name, tensor in parsed["tensors"].items():
            if hf_name not in entries:
                write(hf_name, iter([tensor.to(torch.float32).numpy()]))

    target = folder / SAFETENSORS_NAME
    with open(target, "wb") as out, open(data_path, "rb") as data_in:
        out.write(header_bytes(entries))
        shutil.copyfileobj(data_in, out, 16 * 1024**2)
    data_path.unlink()
    return list(entries)
