"""The precision the pages start on: measured on this machine, overridable, shown with its
figures; and the CPU facts every benchmark prints."""

from __future__ import annotations

import pytest
import torch

import llmlab
from llmlab import cpu, precision
from llmlab.precision import CLASS_ROWS, StepShape, default_precision

# Zen 3 (AVX2, no bfloat16), Sapphire Rapids (AMX), Graviton 3 (ARM with BF16), as Linux lists them.
ZEN3 = "model name : AMD EPYC 7B13\nflags : fpu sse sse2 avx avx2 fma f16c bmi2 sha_ni"
SAPPHIRE = "model name : Intel(R) Xeon(R) Platinum 8488C\nflags : avx2 avx512f avx512_bf16 amx_bf16"
GRAVITON3 = "processor : 0\nFeatures : fp asimd sve bf16 i8mm"


def timed(f32_1: float, f32_16: float, b16_1: float, b16_16: float):
    """A measurement that returns given seconds, and records the shape it was asked for."""
    asked: list[StepShape] = []

    def measure(shape: StepShape):
        asked.append(shape)
        return {
            "float32": {1: f32_1, CLASS_ROWS: f32_16},
            "bfloat16": {1: b16_1, CLASS_ROWS: b16_16},
        }

    return measure, asked


def test_float32_is_chosen_where_bfloat16_is_measured_slower():
    # The figures of a 2-core AVX2 CPU: bfloat16 faster for one row, far slower for a class.
    measure, _ = timed(0.075, 0.63, 0.047, 1.19)
    choice = default_precision(None, environ={}, measure=measure)
    assert choice.dtype == "float32" and choice.source == "measured"
    assert choice.label("float32") == (
        "float32 · faster here (16 rows: 630 ms a step on one core against 1190 ms)"
    )
    assert choice.label("bfloat16") == "bfloat16 · 1.9x slower here"
    assert "630 ms in float32 and 1190 ms in bfloat16" in choice.explanation()


def test_bfloat16_is_chosen_where_it_is_measured_faster():
    measure, _ = timed(0.060, 0.070, 0.035, 0.045)
    choice = default_precision(None, environ={}, measure=measure)
    assert choice.dtype == "bfloat16"
    assert choice.label("bfloat16").startswith("bfloat16 · faster here (16 rows: 45 ms")
    assert choice.label("float32") == "float32 · 1.6x slower here"


def test_a_near_tie_keeps_float32s_exact_numbers():
    # 3% faster is within a measurement's noise: not worth less exact numbers.
    measure, _ = timed(0.060, 0.100, 0.050, 0.097)
    assert default_precision(None, environ={}, measure=measure).dtype == "float32"
    measure, _ = timed(0.060, 0.100, 0.050, 0.094)
    assert default_precision(None, environ={}, measure=measure).dtype == "bfloat16"


@pytest.mark.parametrize("forced", ["bfloat16", "float32", " Float32 "])
def test_llmlab_precision_decides_without_measuring(forced):
    def measure(shape):
        raise AssertionError("measured although LLMLAB_PRECISION decides")

    choice = default_precision(None, environ={"LLMLAB_PRECISION": forced}, measure=measure)
    assert choice.dtype == forced.strip().lower() and choice.source == "LLMLAB_PRECISION"
    assert choice.explanation() == f"{choice.dtype}, set by LLMLAB_PRECISION on this server."
    assert choice.label(choice.dtype) == f"{choice.dtype} · chosen by LLMLAB_PRECISION"


def test_auto_measures_and_a_bad_value_is_refused_by_name():
    measure, asked = timed(0.075, 0.63, 0.047, 1.19)
    assert default_precision(None, environ={"LLMLAB_PRECISION": "auto"}, measure=measure).dtype == (
        "float32"
    )
    assert asked
    with pytest.raises(ValueError, match=r"LLMLAB_PRECISION='fp8'.*auto, float32, bfloat16"):
        default_precision(None, environ={"LLMLAB_PRECISION": "fp8"})


@pytest.mark.parametrize("fixture", ["gemma", "smollm2"])
def test_the_step_shape_counts_every_matrix_of_the_model(fixture, request):
    """The products timed are the model's own: one layer's weights times its layers, plus the
    output layer, make up every weight matrix of the model (tied embedding counted once)."""
    loaded = request.getfixturevalue(fixture)
    measure, asked = timed(0.075, 0.63, 0.047, 1.19)
    default_precision(loaded, environ={}, measure=measure)
    shape = asked[0]
    timed_weights = shape.layers * sum(i * o for i, o in shape.products())
    timed_weights += shape.vocab * shape.hidden
    matrices = {id(p): p.numel() for p in loaded.model.parameters() if p.dim() == 2}
    assert timed_weights == sum(matrices.values())
    # The same shape from the model's name (its converted config), before it is loaded.
    assert precision.shape_of(loaded.name) == shape


def test_the_measurement_times_both_precisions_at_both_batch_sizes():
    shape = StepShape(hidden=64, intermediate=128, query=64, key_value=32, layers=2, vocab=1000)
    timings = precision.measure_step(shape)
    assert set(timings) == {"float32", "bfloat16"}
    for by_rows in timings.values():
        assert set(by_rows) == {1, CLASS_ROWS} and all(s > 0 for s in by_rows.values())


def test_the_public_api_gives_the_choice_and_its_figures():
    choice = llmlab.default_precision("smollm2-135m-instruct", environ={})
    assert choice.dtype in precision.PRECISIONS
    assert choice.dtype == precision.choose(choice.timings)
    data = choice.as_dict()
    assert set(data["step_ms"]) == {"float32", "bfloat16"} and data["cpu"] == choice.cpu.summary()
    # Measured once per process: asking again costs nothing and gives the same figures.
    assert llmlab.default_precision("smollm2-135m-instruct", environ={}).timings == choice.timings


@pytest.mark.parametrize(
    ("text", "machine", "model", "native"),
    [
        (ZEN3, "x86_64", "AMD EPYC 7B13", False),
        (SAPPHIRE, "x86_64", "Intel(R) Xeon(R) Platinum 8488C", True),
        (GRAVITON3, "aarch64", "", True),
        ("", "x86_64", "", False),
    ],
)
def test_cpu_flags_say_whether_bfloat16_is_in_hardware(text, machine, model, native):
    assert cpu.parse_model(text) == model
    assert cpu.has_native_bfloat16(cpu.parse_flags(text), machine) is native


def test_this_cpus_facts_agree_with_torch():
    facts = llmlab.cpu_facts()
    assert facts.vector == torch.backends.cpu.get_cpu_capability()
    assert facts.torch_version == torch.__version__
    header = facts.header()
    assert header.splitlines()[0].startswith(f"CPU: {facts.model}")
    assert f"{facts.vector} ({facts.vector_bits}-bit)" in header
    assert ("native bfloat16" if facts.native_bfloat16 else "no native bfloat16") in header
    assert precision.first_guess(facts) == ("bfloat16" if facts.native_bfloat16 else "float32")
