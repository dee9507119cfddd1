"""From a prompt to the next token: logits, filters, probabilities, entropy, surprisal, logit lens.

One forward pass per (model, prompt) gives everything this module shows: the last position's
logits (what comes next), every position's logits (how surprising each prompt token was), and
each layer's hidden state at the last position (the logit lens). The results sit in a small
LRU cache, so moving a filter slider re-uses them and never runs the model again.

    >>> from llmlab import models
    >>> loaded = models.load("smollm2-135m-instruct")
    >>> dist = next_token_distribution(loaded, "The capital of France is")
    >>> loaded.tokenizer.decode(int(dist.logits.argmax()))
    ' Paris'
    >>> flow = waterfall(dist.logits, temperature=0.7, top_k=50, top_p=0.9)
    >>> [step.name for step in flow.steps]
    ['model', 'temperature', 'top_k', 'top_p']

An empty prompt raises ValueError: with nothing to continue there is no "next" token. (Gemma's
tokenizer would still add <bos>, and SmolLM2's adds nothing at all; we treat both the same.)
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from llmlab import knockout
from llmlab.compute import exclusive

# The filter steps live in their own module; these names stay importable from here.
from llmlab.generation.filter_steps import (  # noqa: F401
    Candidate,
    FilterStep,
    Waterfall,
    candidates,
    entropy_bits,
    token_text,
    waterfall,
)
from llmlab.models import LoadedModel
from llmlab.tokenization.pieces import require_utf8, token_name

CACHE_SIZE = 16
_cache: OrderedDict[tuple, ForwardRecord] = OrderedDict()
_lock = threading.Lock()
_forward_passes = 0


@dataclass
class TokenSurprisal:
    """How expected one prompt token was. The first token has no context, so no score."""

    index: int
    token_id: int
    text: str
    probability: float | None  # what the model gave this token before seeing it
    rank: int | None  # 1 = the model's top guess
    bits: float | None  # surprisal = -log2(probability)


@dataclass
class PromptSurprisal:
    tokens: list[TokenSurprisal]
    perplexity: float  # exp(mean negative log-likelihood), the same as exp(transformers' loss)
    mean_bits: float  # average surprisal per scored token


@dataclass
class ForwardRecord:
    """What one forward pass over the prompt leaves behind (cached)."""

    model_name: str
    prompt: str
    prompt_ids: list[int]
    logits: torch.Tensor  # (vocab,) float32, last position
    layer_states: torch.Tensor  # (layers + 1, hidden): embeddings, then each layer, last position
    surprisal: PromptSurprisal
    notice: str | None = None  # set when the prompt was cut to fit the context
    lens: dict[int, LogitLens] = field(default_factory=dict)  # logit lens, by top-N
    knock_out: tuple = ()  # the parts switched off for this pass (see `llmlab.knockout`)


@dataclass
class NextTokenDistribution:
    model_name: str
    prompt: str
    prompt_ids: list[int]
    logits: torch.Tensor  # (vocab,) float32
    probabilities: torch.Tensor  # softmax(logits)
    notice: str | None = None
    knock_out: tuple = ()  # the parts that were switched off, e.g. (("head", 3, 1),)


@dataclass
class Guess:
    guess: str
    token_id: int
    token_text: str
    probability: float
    rank: int
    whole_word: bool  # False when the guess needs several tokens (we score the first one)


@dataclass
class LogitLens:
    layers: list[str]  # "embeddings", "layer 1", ... "layer N (output)"
    token_ids: list[list[int]]  # [layer][rank]
    tokens: list[list[str]]
    probabilities: list[list[float]]
    final_token_probability: list[float]  # the model's final top-1 token, read at each layer
    notes: list[list[str]] = field(default_factory=list)  # byte fragments explained, else ""


def forward_passes() -> int:
    """How many forward passes this module has run (the page's speed promise is tested on it)."""
    return _forward_passes


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _encode(
    loaded: LoadedModel, prompt: str, max_tokens: int | None
) -> tuple[list[int], str | None]:
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    if prompt == "":
        raise ValueError("prompt is empty: type a few words for the model to continue")
    require_utf8(prompt)  # a lone surrogate is not text a tokenizer can read
    ids = loaded.tokenizer(prompt)["input_ids"]
    limit = max_tokens or loaded.facts.context_length
    if limit < 2:
        raise ValueError(f"max_tokens must be at least 2, got {max_tokens}")
    notice = None
    if len(ids) > limit:
        # Keep the start-of-text token (Gemma's <bos>) and the end of the text, which is
        # what the next token depends on most.
        keep_bos = ids[0] == loaded.tokenizer.bos_token_id
        head = ids[:1] if keep_bos else []
        notice = (
            f"The prompt is {len(ids):,} tokens but the model reads at most {limit:,}: "
            f"only the last {limit - len(head):,} tokens were used."
        )
        ids = head + ids[len(ids) - (limit - len(head)) :]
    return ids, notice


def _surprisal(loaded: LoadedModel, ids: list[int], logits: torch.Tensor) -> PromptSurprisal:
    # Position t's logits predict token t + 1, so token 0 gets no score.
    log_probs = torch.log_softmax(logits[:-1].float(), dim=-1)  # (T - 1, vocab)
    targets = torch.tensor(ids[1:], dtype=torch.long)
    chosen = log_probs.gather(1, targets[:, None])[:, 0] if len(ids) > 1 else torch.empty(0)
    ranks = (log_probs > chosen[:, None]).sum(dim=1) + 1 if len(ids) > 1 else torch.empty(0)
    tokens = [TokenSurprisal(0, ids[0], token_text(loaded.tokenizer, ids[0]), None, None, None)]
    for i in range(1, len(ids)):
        lp = float(chosen[i - 1])
        tokens.append(
            TokenSurprisal(
                i, ids[i], token_text(loaded.tokenizer, ids[i]), math.exp(lp), int(ranks[i - 1]),
                -lp / math.log(2),
            )
        )  # fmt: skip
    nll = float(-chosen.double().mean()) if len(ids) > 1 else math.nan
    return PromptSurprisal(tokens, math.exp(nll), nll / math.log(2))


def _forward(
    loaded: LoadedModel, prompt: str, max_tokens: int | None = None, knock_out: tuple = ()
) -> ForwardRecord:
    global _forward_passes
    ids, notice = _encode(loaded, prompt, max_tokens)
    if not ids:
        raise ValueError("prompt gave no tokens: type a few words for the model to continue")
    key = (
        loaded.name, str(loaded.model.dtype), id(loaded.model), prompt, len(ids), ids[-1],
        knock_out,
    )  # fmt: skip
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    # Between the engine's steps on the same model: the cores serve one forward pass at a time.
    # Parts switched off are zeroed by hooks of this thread only, removed right after the pass.
    with exclusive(), knockout.switched_off(loaded.model, knock_out), torch.no_grad():
        output = loaded.model(
            torch.tensor([ids], device=loaded.device), output_hidden_states=True, use_cache=False
        )
    with _lock:
        _forward_passes += 1
    # Models may compute in bfloat16/float16; softmax and entropy are done in float32.
    all_logits = output.logits[0].float().cpu()
    layer_states = torch.stack([h[0, -1].float().cpu() for h in output.hidden_states])
    record = ForwardRecord(
        loaded.name, prompt, ids, all_logits[-1].clone(), layer_states,
        _surprisal(loaded, ids, all_logits), notice, knock_out=knock_out,
    )  # fmt: skip
    with _lock:
        _cache[key] = record
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return record


def next_token_distribution(
    loaded: LoadedModel,
    prompt: str,
    max_tokens: int | None = None,
    knock_out: list | tuple | None = None,
) -> NextTokenDistribution:
    """The model's scores for the token after ``prompt`` (one cached forward pass).

    ``max_tokens`` caps the prompt length (default: the model's context length); a longer
    prompt keeps its end and the result carries a ``notice`` saying so.

    ``knock_out`` switches parts of the model off for this pass (their output set to zero):
    ``("head", layer, head)``, ``("attention", layer)`` or ``("mlp", layer)``, counted from 0.
    The shared model itself is never changed (see `llmlab.knockout`).

        >>> dist = next_token_distribution(loaded, "Hi", knock_out=[("mlp", 0)])  # doctest: +SKIP
    """
    parts = knockout.check_parts(loaded.model, knock_out)
    record = _forward(loaded, prompt, max_tokens, parts)
    return NextTokenDistribution(
        record.model_name, prompt, record.prompt_ids, record.logits,
        torch.softmax(record.logits, dim=-1), record.notice, parts,
    )  # fmt: skip


def prompt_surprisal(
    loaded: LoadedModel, text: str, max_tokens: int | None = None
) -> PromptSurprisal:
    """Probability, rank and surprisal (bits) of each token of ``text``, and its perplexity."""
    return _forward(loaded, text, max_tokens).surprisal


def guess(loaded: LoadedModel, probabilities: torch.Tensor, text: str) -> Guess:
    """Where the model ranked a student's guess for the next word.

    The guess is tried as typed and with a leading space (words mid-sentence start with one);
    the reading the model found more likely is kept. A guess of several tokens is scored by
    its first token, and ``whole_word`` says so.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("guess is empty: type the word you expect next")
    options = [text] if text[0].isspace() else [text, " " + text]
    best: Guess | None = None
    for option in options:
        ids = loaded.tokenizer(option, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        p = float(probabilities[ids[0]])
        rank = int((probabilities > p).sum()) + 1
        found = Guess(text, ids[0], token_text(loaded.tokenizer, ids[0]), p, rank, len(ids) == 1)
        if best is None or found.probability > best.probability:
            best = found
    if best is None:
        raise ValueError(f"guess {text!r} gave no tokens")
    return best


def _final_norm(model: Any) -> Any:
    """The norm before the LM head: `model.norm` in Llama and Gemma, `transformer.ln_f` in GPT-2."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "norm"):
        return inner.norm
    return model.transformer.ln_f


def logit_lens(
    loaded: LoadedModel, prompt: str, top: int = 5, max_tokens: int | None = None
) -> LogitLens:
    """Top ``top`` next-token predictions read out after each layer (final norm + LM head).

    transformers returns the last hidden state *after* the final norm, so only the earlier
    states get the norm here; the last row therefore equals the model's real output.
    """
    record = _forward(loaded, prompt, max_tokens)
    if top in record.lens:
        return record.lens[top]
    model = loaded.model
    cap = getattr(model.config, "final_logit_softcapping", None)
    norm, head = _final_norm(model), model.get_output_embeddings()
    states = record.layer_states.to(loaded.device, dtype=model.dtype)
    with exclusive(), torch.no_grad():
        normed = torch.cat([norm(states[:-1]), states[-1:]])
        logits = head(normed).float().cpu()  # (layers + 1, vocab)
    if cap:  # Gemma 2 squashes logits into (-cap, cap); Gemma 3 has no cap (None)
        logits = torch.tanh(logits / cap) * cap
    probs = torch.softmax(logits, dim=-1)
    top_probs, top_ids = torch.topk(probs, top, dim=-1)
    final_top = int(record.logits.argmax())
    last = len(probs) - 1
    names = ["embeddings"] + [
        f"layer {i}" + (" (output)" if i == last else "") for i in range(1, last + 1)
    ]
    named = [[token_name(loaded.tokenizer, t) for t in row] for row in top_ids.tolist()]
    record.lens[top] = LogitLens(
        names, top_ids.tolist(), [[n.label for n in row] for row in named],
        top_probs.tolist(), probs[:, final_top].tolist(), [[n.note for n in row] for row in named],
    )  # fmt: skip
    return record.lens[top]


def append_token(loaded: LoadedModel, prompt: str, token_id: int) -> str:
    """The prompt with one chosen token appended (what "pick the next token" does)."""
    text = loaded.tokenizer.decode([token_id])
    if "\ufffd" in text:  # a byte piece: decode it together with what comes before
        ids = loaded.tokenizer(prompt)["input_ids"] + [token_id]
        return loaded.tokenizer.decode(ids, skip_special_tokens=True)
    return prompt + text


MAX_SEED = 2**31 - 1


def sample_token(probabilities: torch.Tensor, seed: int) -> int:
    """Draw one token id from a probability vector; the same seed draws the same token.

    A token the filters removed (probability 0) is never drawn.

    >>> sample_token(torch.tensor([0.0, 0.25, 0.75, 0.0]), seed=0) in (1, 2)
    True
    >>> len({sample_token(torch.tensor([0.5, 0.5]), seed=7) for _ in range(5)})
    1
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed={seed!r} is out of range: allowed whole numbers 0..{MAX_SEED}")
    generator = torch.Generator().manual_seed(seed)
    return int(torch.multinomial(probabilities.float(), 1, generator=generator))
