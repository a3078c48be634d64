"""Step-indexed pre-training batches, built row by row.

Global row g of the stream is example g mod U of epoch g // U (U: units per epoch, see pairing).
Its unit is a per-epoch pseudo-random permutation evaluated at that index, and its pairing and
masking draws are keyed by g alone, so the batch at any step can be rebuilt from the step (exact
resume), epochs follow each other without a pass over the corpus, and every process builds only
its own rows: the rows of N processes concatenate to exactly the one-process batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from bert_flax.config import DataConfig, MaskingConfig
from bert_flax.data.masking import mask_tokens
from bert_flax.data.pairing import Instances, Units, anchor_units, chunk_units, segment_rows, sentence_rows, single_rows
from bert_flax.data.row_random import RowRandom, Stream, derive_key, permute
from bert_flax.data.token_corpus import TokenizedCorpus
from bert_flax.data.tokenizer import TokenIds
from bert_flax.errors import UserError

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where a stream stands: batches produced so far, and the next example (epoch, offset)."""

    step: int = 0
    epoch: int = 0
    offset: int = 0


def layout(instances: Instances, token_ids: Any, max_seq_len: int, ids: TokenIds) -> dict[str, np.ndarray]:
    """[CLS] A [SEP] B [SEP] [PAD]… for every instance (just [CLS] A [SEP] when B is empty)."""
    len_a_B1 = (instances.a_end - instances.a_start)[:, None]
    len_b_B1 = (instances.b_end - instances.b_start)[:, None]
    has_b_B1 = len_b_B1 > 0
    j_1xL = np.arange(max_seq_len)[None, :]
    in_a_BxL = (j_1xL >= 1) & (j_1xL <= len_a_B1)
    b_first_B1 = len_a_B1 + 2
    in_b_BxL = has_b_B1 & (j_1xL >= b_first_B1) & (j_1xL < b_first_B1 + len_b_B1)
    sep_BxL = (j_1xL == len_a_B1 + 1) | (has_b_B1 & (j_1xL == b_first_B1 + len_b_B1))
    source_BxL = np.where(
        in_a_BxL,
        instances.a_start[:, None] + j_1xL - 1,
        np.where(in_b_BxL, instances.b_start[:, None] + j_1xL - b_first_B1, 0),
    )
    text_BxL = in_a_BxL | in_b_BxL
    input_ids_BxL = np.where(text_BxL, token_ids[source_BxL], ids.pad)
    input_ids_BxL = np.where(sep_BxL, ids.sep, input_ids_BxL)
    input_ids_BxL[:, 0] = ids.cls
    length_B1 = len_a_B1 + 2 + np.where(has_b_B1, len_b_B1 + 1, 0)
    return {
        "input_ids": input_ids_BxL.astype(np.int32),
        "token_type_ids": (has_b_B1 & (j_1xL >= b_first_B1) & (j_1xL < length_B1)).astype(np.int32),
        "attention_mask": (j_1xL < length_B1).astype(np.int32),
        "maskable": text_BxL,
    }


def make_batch(
    instances: Instances,
    token_ids: Any,
    ids: TokenIds,
    data: DataConfig,
    masking: MaskingConfig,
    rng: RowRandom | np.random.Generator,
    mlm: bool = True,
) -> Batch:
    """The batch contract: int32 [B, L] ids/types/mask, [B, P] MLM targets, int32 [B] NSP labels.

    Without `mlm` (NSP-only training) nothing is masked and every prediction slot has weight 0.
    """
    laid_out = layout(instances, token_ids, data.max_seq_len, ids)
    maskable_BxL = laid_out.pop("maskable")
    if not mlm:
        maskable_BxL = np.zeros_like(maskable_BxL)
    word_start_BxL = None
    if masking.whole_word_mask:
        previous_maskable_BxL = np.pad(maskable_BxL[:, :-1], ((0, 0), (1, 0)))
        word_start_BxL = maskable_BxL & (~ids.is_continuation_V[laid_out["input_ids"]] | ~previous_maskable_BxL)
    masked = mask_tokens(
        laid_out["input_ids"],
        maskable_BxL,
        masking,
        masking.num_predictions(data.max_seq_len),
        ids.mask,
        ids.random_ids,
        rng,
        word_start_BxL,
    )
    return {
        "input_ids": masked.input_ids_BxL,
        "token_type_ids": laid_out["token_type_ids"],
        "attention_mask": laid_out["attention_mask"],
        "masked_lm_positions": masked.masked_lm_positions_BxP,
        "masked_lm_ids": masked.masked_lm_ids_BxP,
        "masked_lm_weights": masked.masked_lm_weights_BxP,
        "next_sentence_labels": instances.next_sentence_labels.astype(np.int32),
    }


def local_rows(batch: Batch, process_index: int, process_count: int) -> Batch:
    """This process' slice of a global batch (multi-host: each host feeds only its own rows)."""
    if len(batch["input_ids"]) % process_count:
        raise ValueError(f"a batch of {len(batch['input_ids'])} rows does not split over {process_count} processes")
    rows = len(batch["input_ids"]) // process_count
    return {key: value[process_index * rows : (process_index + 1) * rows] for key, value in batch.items()}


class PretrainingStream:
    """Batches over the documents of one split (`in_split_D`), addressable by step."""

    def __init__(
        self,
        tokenized: TokenizedCorpus,
        ids: TokenIds,
        in_split_D: np.ndarray,
        data: DataConfig,
        masking: MaskingConfig,
        nsp: bool,
        seed: int,
        batch_size: int,
        mlm: bool = True,
        stream: Stream = Stream.PAIRING,
    ) -> None:
        self.tokenized, self.ids = tokenized, ids
        self.data, self.masking, self.nsp, self.seed, self.batch_size = data, masking, nsp, seed, batch_size
        self.mlm, self.stream = mlm, stream
        self.max_tokens = data.max_seq_len - (3 if nsp else 2)
        self.chunks = chunk_units(tokenized, in_split_D, self.max_tokens)
        self.sentence_pairs = nsp and data.pairing == "sentences"
        self.units: Units = anchor_units(tokenized, in_split_D) if self.sentence_pairs else self.chunks
        if self.units.count == 0:
            raise UserError("the documents make no examples (too short to pair); add text or use train.objectives=[mlm]")

    @property
    def examples_per_epoch(self) -> int:
        return self.units.count

    def instances(self, rows_B: np.ndarray) -> Instances:
        """The examples of global rows `rows_B` (int64): unit by per-epoch permutation, then pairing."""
        count = self.units.count
        epoch_B, index_B = rows_B // count, rows_B % count
        units_B = np.empty_like(rows_B)
        for epoch in np.unique(epoch_B):
            here = epoch_B == epoch
            units_B[here] = permute(index_B[here], count, derive_key(self.seed, self.stream, int(epoch)))
        rng = RowRandom(derive_key(self.seed, self.stream), rows_B)
        if not self.nsp:
            return single_rows(self.tokenized, self.units, units_B, self.max_tokens, rng)
        if self.sentence_pairs:
            return sentence_rows(self.tokenized, self.units, self.chunks, units_B, self.max_tokens, rng)
        return segment_rows(
            self.tokenized, self.units, units_B, self.max_tokens, self.data.short_seq_prob, self.ids.is_continuation_V, rng
        )

    def rows(self, rows_B: np.ndarray) -> tuple[Batch, Instances]:
        """The batch of global rows `rows_B` and their instances."""
        instances = self.instances(rows_B)
        rng = RowRandom(derive_key(self.seed, Stream.MASKING, self.stream), rows_B)
        return make_batch(instances, self.tokenized.token_ids, self.ids, self.data, self.masking, rng, self.mlm), instances

    def position(self, step: int) -> DataPosition:
        """The position before batch `step`."""
        epoch, offset = divmod(step * self.batch_size, self.units.count)
        return DataPosition(step=step, epoch=epoch, offset=offset)

    def local_row_indices(self, step: int, process_index: int = 0, process_count: int = 1) -> np.ndarray:
        """int64: the global rows of batch `step` that process `process_index` of `process_count` builds."""
        if self.batch_size % process_count:
            raise ValueError(f"a batch of {self.batch_size} rows does not split over {process_count} processes")
        per_process = self.batch_size // process_count
        first = step * self.batch_size + process_index * per_process
        return np.arange(first, first + per_process, dtype=np.int64)

    def batch_at(
        self, position: DataPosition, process_index: int = 0, process_count: int = 1
    ) -> tuple[Batch, Instances, DataPosition]:
        """This process' rows of the batch at `position`, their instances, and the position after it."""
        batch, instances = self.rows(self.local_row_indices(position.step, process_index, process_count))
        return batch, instances, self.position(position.step + 1)

    def iterate(
        self, start: DataPosition = DataPosition(), process_index: int = 0, process_count: int = 1
    ) -> Iterator[tuple[Batch, DataPosition]]:
        """Endless (local batch, position after it) pairs from `start`."""
        position = start
        while True:
            batch, _, position = self.batch_at(position, process_index, process_count)
            yield batch, position

    def num_eval_rows(self, max_batches: int) -> int:
        """Held-out examples scored per eval: every unit once, at most `max_batches` batches (0: all)."""
        count = self.units.count
        return count if max_batches == 0 else min(count, max_batches * self.batch_size)

    def num_eval_batches(self, max_batches: int) -> int:
        """Batches per eval: the held-out examples of `num_eval_rows`, the last batch padded."""
        return -(-self.num_eval_rows(max_batches) // self.batch_size)

    def eval_batch(
        self, index: int, max_batches: int, process_index: int = 0, process_count: int = 1
    ) -> tuple[Batch, Instances]:
        """Eval batch `index` (this process' rows): the fixed draw of epoch 0; rows past the end
        repeat the first row with zero weight. Carries `example_weights` (float32 [B]: 1 real, 0 padding)."""
        rows_B = self.local_row_indices(index, process_index, process_count)
        real_B = rows_B < self.num_eval_rows(max_batches)
        batch, instances = self.rows(np.where(real_B, rows_B, 0))
        batch["masked_lm_weights"] = batch["masked_lm_weights"] * real_B[:, None]
        batch["example_weights"] = real_B.astype(np.float32)
        return batch, instances

    def eval_batches(self, max_batches: int, process_index: int = 0, process_count: int = 1) -> list[Batch]:
        """Every eval batch (this process' rows), built once and reused at every eval."""
        indices = range(self.num_eval_batches(max_batches))
        return [self.eval_batch(i, max_batches, process_index, process_count)[0] for i in indices]
