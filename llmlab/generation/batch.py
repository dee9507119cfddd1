"""The rows an engine steps together: one KV cache for every request, left-padded to one length.

A transformer reads a batch as a rectangle, so rows of different lengths are padded on the left
and an attention mask (1 = a real token, 0 = padding) tells every layer to ignore the padding.
Each row also gets its own position ids, so a row's first real token is at position 0 whatever
padding stands before it: the numbers a row gets are those it would get alone, up to float
rounding in the larger matrix products.

Rows come and go while the others keep going (continuous batching):

* `prefill` runs new prompts once and merges their cache into the batch (the shorter side is
  padded on the left), so they take part in the very next `step`;
* a `Reading` runs a long prompt a part at a time into a cache of its own (chunked prefill),
  between the batch's steps, and merges it into the batch once the last part is read;
* `select` keeps, drops or reorders rows: a finished request leaves, a beam takes its parent's
  cache. Columns that are padding in every row left are then cut away.

The cache is transformers' `DynamicCache`. Its sliding-window layers (Gemma 3 keeps only the last
511 positions in 5 of every 6 layers) count every position they have seen in
`cumulative_length`; padding and cutting columns keep that count equal to the mask's width, which
is what the attention masks are built from.

    >>> batch = Batch(model)                                   # doctest: +SKIP
    >>> batch.prefill([[1, 2, 3], [4, 5]]).shape              # doctest: +SKIP
    torch.Size([2, 49152])
    >>> batch.step([6, 7]).shape, batch.size                   # doctest: +SKIP
    (torch.Size([2, 49152]), 2)
"""

from __future__ import annotations

from typing import Any

import torch


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    """`tensor` with `columns` zeros put in front along `dim`."""
    if columns <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _is_sliding(layer: Any) -> bool:
    return bool(getattr(layer, "is_sliding", False))


def _fitted(layer: Any, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One cache layer's keys and values as a batch whose mask is `width` columns wide holds
    them (the layer itself is left as it is).

    A full layer keeps one entry per column. A sliding-window layer keeps only the last
    ``sliding_window - 1`` of them and counts the columns in `cumulative_length`.
    """
    keep = min(width, layer.sliding_window - 1) if _is_sliding(layer) else width
    keys, values = layer.keys, layer.values
    held = keys.shape[-2]
    if held < keep:
        return _pad_left(keys, keep - held, dim=-2), _pad_left(values, keep - held, dim=-2)
    return keys[:, :, held - keep :], values[:, :, held - keep :]


def _fit_layer(layer: Any, width: int) -> None:
    """Make one cache layer hold a batch whose mask is `width` columns wide (see `_fitted`)."""
    layer.keys, layer.values = _fitted(layer, width)
    if _is_sliding(layer):
        layer.cumulative_length = width


class Batch:
    """One KV cache, attention mask and position counter for every row the engine runs."""

    def __init__(self, model: Any, pad_id: int = 0, solo: Any = None):
        self.model = model
        self.pad_id = pad_id  # any valid id: padded positions are masked out
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # (rows, width) long
        self.positions: torch.Tensor | None = None  # (rows,) the position of each row's next token
        # A lone row steps through the compiled step (`llmlab.generation.compiled`) when one is
        # ready: its keys and values then live in `slot`, and `cache` holds none of them.
        self.solo = solo
        self.slot: Any = None
        self.compiled_steps = 0

    @property
    def size(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def reset(self) -> None:
        if self.slot is not None:
            self.solo.release(self.slot)
            self.slot = None
        self.cache = self.mask = self.positions = None

    def _enter_slot(self) -> bool:
        """Move a lone row's keys and values into a free slot of the compiled step; True when
        the row is (now) in one."""
        if self.slot is not None:
            if self.width < self.slot.length:
                return True
            self._leave_slot()  # the slot is full: on in the batch's own cache
            return False
        if self.solo is None or self.size != 1 or not self.solo.ready:
            return False
        assert self.mask is not None
        if not bool(self.mask.all()):
            return False
        slot = self.solo.acquire(self.width)
        if slot is None:
            return False
        width = self.width
        for mine, theirs in zip(self.cache.layers, slot.cache.layers, strict=True):
            theirs.keys[:, :, :width].copy_(mine.keys)
            theirs.values[:, :, :width].copy_(mine.values)
            theirs.cumulative_length.fill_(width)  # where the next token's keys are written
            mine.keys, mine.values = mine.keys[:, :, :0].clone(), mine.values[:, :, :0].clone()
        self.slot = slot
        return True

    def _leave_slot(self) -> None:
        """Move the row's keys and values back from its slot into the batch's own cache."""
        if self.slot is None:
            return
        width = self.width
        for mine, theirs in zip(self.cache.layers, self.slot.cache.layers, strict=True):
            mine.keys = theirs.keys[:, :, :width].clone()
            mine.values = theirs.values[:, :, :width].clone()
        self.solo.release(self.slot)
        self.slot = None

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any):
        # A mask of all ones is passed as None: the model then takes its plain causal path, the
        # one a request alone takes (same kernels, same numbers).
        output = self.model(
            input_ids=ids,
            attention_mask=None if bool(mask.all()) else mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        # float32: a bfloat16 model's softmax would otherwise be rounded to 3 digits.
        return output.logits[:, -1, :].to(torch.float32), output.past_key_values

    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Run new prompts (left-padded together) and add them as the last rows; their logits."""
        reading = self.reading(prompts)
        logits = reading.read(reading.total)
        assert logits is not None
        return logits

    def reading(self, prompts: list[list[int]]) -> Reading:
        """New prompts to read a part at a time (`Reading.read`); they join when fully read."""
        return Reading(self, prompts)

    def _merge(self, cache: Any, mask: torch.Tensor, positions: torch.Tensor) -> None:
        """Add rows read into `cache` as the last rows. Everything is built first and taken at
        the end, so a merge that fails (no memory for the larger cache) leaves the batch as it
        was."""
        self._leave_slot()
        if self.mask is None:
            self.cache, self.mask, self.positions = cache, mask, positions
            return
        width = max(self.width, int(mask.shape[1]))
        merged = []
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            (my_keys, my_values), (their_keys, their_values) = (
                _fitted(mine, width),
                _fitted(theirs, width),
            )
            merged.append((torch.cat([my_keys, their_keys]), torch.cat([my_values, their_values])))
        new_mask = torch.cat(
            [_pad_left(self.mask, width - self.width, 1), _pad_left(mask, width - mask.shape[1], 1)]
        )
        new_positions = torch.cat([self.positions, positions])
        for layer, (keys, values) in zip(self.cache.layers, merged, strict=True):
            layer.keys, layer.values = keys, values
            if _is_sliding(layer):
                layer.cumulative_length = width
        self.mask, self.positions = new_mask, new_positions

    def step(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per row (in row order); the next logits, (rows, vocab) float32."""
        assert self.mask is not None and self.positions is not None
        if self._enter_slot():
            try:
                logits = self.solo.step(
                    self.slot, int(tokens[0]), int(self.positions[0]), self.width
                )
            except Exception as error:  # noqa: BLE001 - a fault of the compiled graph
                self.solo.fail(error)
                self._leave_slot()  # the slot's columns up to `width` are untouched
            else:
                self.mask = torch.cat([self.mask, self.mask.new_ones((1, 1))], dim=1)
                self.positions = self.positions + 1
                self.compiled_steps += 1
                return logits
        ids = torch.tensor(tokens, dtype=torch.long)[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.size, 1))], dim=1)
        logits, self.cache = self._forward(ids, self.mask, self.positions[:, None], self.cache)
        self.positions = self.positions + 1
        return logits

    def select(self, rows: list[int]) -> None:
        """Keep these rows, in this order (a row may appear twice: a beam's two children)."""
        if not rows:
            self.reset()
            return
        assert self.mask is not None and self.positions is not None
        if rows == list(range(self.size)):
            return
        self._leave_slot()
        index = torch.tensor(rows, dtype=torch.long)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        # Columns that are padding in every remaining row hold nothing: cut them away.
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.width
        if first:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                _fit_layer(layer, self.width)


class Reading:
    """Prompts being read into a cache of their own, some columns at a time (chunked prefill).

    Each `read` runs the next columns of every row with the cache of the columns before, the
    way `model.generate(prefill_chunk_size=...)` does; the last one merges the rows into the
    batch and returns their logits. A row's numbers equal those of reading it in one pass up
    to float rounding (the matrix products have other shapes).

    Rows of different lengths are left-padded, so their first columns can be padding only;
    such prompts are read in one pass (the engine reads several prompts only when they are
    short). A beam search's rows are one prompt repeated, so it is read in parts like any other.
    """

    def __init__(self, batch: Batch, prompts: list[list[int]]):
        from transformers import DynamicCache

        self.batch = batch
        width = max(len(prompt) for prompt in prompts)
        self.ids = torch.full((len(prompts), width), batch.pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            self.ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            self.mask[row, width - len(prompt) :] = 1
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
        self.in_parts = len(set(len(p) for p in prompts)) == 1
        self.cache = DynamicCache(config=batch.model.config)
        self.done = 0  # columns read so far

    @property
    def total(self) -> int:
        """The prompt's length in tokens (the widest row's)."""
        return int(self.ids.shape[1])

    def read(self, columns: int) -> torch.Tensor | None:
        """Read up to `columns` more columns (all that are left when the rows differ in
        length); the rows' logits when that was the last of the prompt, else None."""
        end = self.total if not self.in_parts else min(self.total, self.done + max(1, columns))
        logits, self.cache = self.batch._forward(
            self.ids[:, self.done : end],
            self.mask[:, :end],
            self.positions[:, self.done : end],
            self.cache,
        )
        self.done = end
        if end < self.total:
            return None
        self.batch._merge(self.cache, self.mask, self.lengths)
        self.cache = None
        return logits
