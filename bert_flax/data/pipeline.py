"""Step-indexed pre-training batches, built row by row.

Global example g of the stream is unit g mod U of epoch g // U (U: units per epoch, see pairing),
by a per-epoch pseudo-random permutation evaluated at that index, and its pairing and masking draws
are keyed by g alone. Unpacked, row g is example g; packed (data/packing.py), rows hold whole
examples chosen from their lengths. Either way the batch at any step can be rebuilt from the step
(exact resume), epochs follow each other without a pass over the corpus, and every process builds
only its own rows: the rows of N processes concatenate to exactly the one-process batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from bert_flax.config import DataConfig, MaskingConfig
from bert_flax.data.masking import mask_tokens
from bert_flax.data.packing import Anchor, PackedRows, RowStream
from bert_flax.data.pairing import Instances, Units, anchor_units, chunk_units, segment_rows, sentence_rows, single_rows
from bert_flax.data.row_random import RowRandom, Stream, derive_key, permute
from bert_flax.data.token_corpus import TokenizedCorpus
from bert_flax.data.tokenizer import TokenIds
from bert_flax.errors import UserError

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where a stream stands: batches produced so far, and the next example (epoch, offset). Packed streams
    also hold the group of examples that holds the next row and the row it begins at (0, 0 unpacked), so a
    resumed run finds its rows without packing the groups before them; offset is then the group's first
    example in its epoch."""

    step: int = 0
    epoch: int = 0
    offset: int = 0
    group: int = 0
    group_first_row: int = 0


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


def mask_examples(
    instances: Instances,
    token_ids: Any,
    ids: TokenIds,
    data: DataConfig,
    masking: MaskingConfig,
    rng: RowRandom | np.random.Generator,
    mlm: bool = True,
) -> Batch:
    """Every instance laid out and masked as a row of its own: int32 [N, L] ids/types/mask, [N, P] MLM
    targets (P: one example's slots), int32 [N] NSP labels. Without `mlm` (NSP-only training) nothing is
    masked and every prediction slot has weight 0."""
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


def pack_rows(
    examples: Batch, row_starts_R1: np.ndarray, examples_per_row: int, num_predictions: int, pad_id: int
) -> Batch:
    """The batch contract from one-example rows (`mask_examples`): row r holds examples
    [row_starts[r], row_starts[r + 1]) back to back from position 0, then [PAD]. Per token: its example's
    number in the row (`segment_ids`, 1..E, 0 at padding) and its position in the example; per example slot
    (E): its [CLS] position, NSP label and weight (0 on unused slots); predictions at row positions.
    With one example per row the arrays are `mask_examples`' own (and E = 1)."""
    mask_NxL = examples["attention_mask"]
    (num_examples, length), num_rows = mask_NxL.shape, len(row_starts_R1) - 1
    lengths_N = mask_NxL.sum(axis=1).astype(np.int64)
    row_N = np.repeat(np.arange(num_rows), np.diff(row_starts_R1))
    slot_N = np.arange(num_examples) - row_starts_R1[row_N]
    flat_start_N = np.cumsum(lengths_N) - lengths_N  # each example's first token in all examples back to back
    offset_N = flat_start_N - flat_start_N[row_starts_R1[row_N]]
    if np.any(offset_N + lengths_N > length) or np.any(slot_N >= examples_per_row):
        raise ValueError(f"rows hold more than {length} positions or {examples_per_row} examples")

    example_T = np.repeat(np.arange(num_examples), lengths_N)
    position_T = np.arange(len(example_T)) - flat_start_N[example_T]
    row_T, column_T = row_N[example_T], offset_N[example_T] + position_T

    def per_token(values_T: np.ndarray, fill: int) -> np.ndarray:
        out_RxL = np.full((num_rows, length), fill, dtype=np.int32)
        out_RxL[row_T, column_T] = values_T
        return out_RxL

    example_K, column_K = np.nonzero(examples["masked_lm_weights"] > 0)  # by example, ascending position
    row_K = row_N[example_K]
    rank_K = np.arange(len(row_K)) - np.searchsorted(row_K, row_K, side="left")
    if len(rank_K) and rank_K.max() >= num_predictions:
        raise ValueError(f"a row has more than {num_predictions} predictions")
    positions_RxP = np.zeros((num_rows, num_predictions), dtype=np.int32)
    positions_RxP[row_K, rank_K] = examples["masked_lm_positions"][example_K, column_K] + offset_N[example_K]
    ids_RxP = np.zeros((num_rows, num_predictions), dtype=np.int32)
    ids_RxP[row_K, rank_K] = examples["masked_lm_ids"][example_K, column_K]
    weights_RxP = np.zeros((num_rows, num_predictions), dtype=np.float32)
    weights_RxP[row_K, rank_K] = 1.0

    def per_example(values_N: np.ndarray, dtype: Any) -> np.ndarray:
        out_RxE = np.zeros((num_rows, examples_per_row), dtype=dtype)
        out_RxE[row_N, slot_N] = values_N
        return out_RxE

    return {
        "input_ids": per_token(examples["input_ids"][example_T, position_T], pad_id),
        "token_type_ids": per_token(examples["token_type_ids"][example_T, position_T], 0),
        "attention_mask": per_token(np.ones_like(example_T), 0),
        "segment_ids": per_token(slot_N[example_T] + 1, 0),
        "position_ids": per_token(position_T, 0),
        "masked_lm_positions": positions_RxP,
        "masked_lm_ids": ids_RxP,
        "masked_lm_weights": weights_RxP,
        "cls_positions": per_example(offset_N, np.int32),
        "next_sentence_labels": per_example(examples["next_sentence_labels"], np.int32),
        "example_weights": per_example(np.ones(num_examples), np.float32),
    }


def one_per_row(count: int) -> np.ndarray:
    """row_starts of `count` rows holding one example each."""
    return np.arange(count + 1, dtype=np.int64)


def make_batch(
    instances: Instances,
    token_ids: Any,
    ids: TokenIds,
    data: DataConfig,
    masking: MaskingConfig,
    rng: RowRandom | np.random.Generator,
    mlm: bool = True,
) -> Batch:
    """The batch contract (README, "The batch") with one example per row."""
    examples = mask_examples(instances, token_ids, ids, data, masking, rng, mlm)
    return pack_rows(examples, one_per_row(len(instances)), 1, masking.num_predictions(data.max_seq_len), ids.pad)


def local_rows(batch: Batch, process_index: int, process_count: int) -> Batch:
    """This process' slice of a global batch (multi-host: each host feeds only its own rows)."""
    if len(batch["input_ids"]) % process_count:
        raise ValueError(f"a batch of {len(batch['input_ids'])} rows does not split over {process_count} processes")
    rows = len(batch["input_ids"]) // process_count
    return {key: value[process_index * rows : (process_index + 1) * rows] for key, value in batch.items()}


class PretrainingStream:
    """Batches over the documents of one split (`in_split_D`), addressable by step.

    Unpacked (data.packing=false), global row g is example g. Packed, the rows come from a RowStream
    (data/packing.py) over the same examples: an example is the same pair, laid out and masked with the
    same draws, whether it is packed or not.
    """

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
        self.packed = data.packing
        self.examples_per_row = data.examples_per_row
        self.num_predictions = masking.num_predictions(data.max_seq_len, self.examples_per_row)
        self.row_stream = self._row_stream(self.units.count) if self.packed else None
        self._eval_row_streams: dict[int, RowStream] = {}
        self._recent_instances: dict[int, Instances] = {}  # first example → instances of a packed group

    @property
    def examples_per_epoch(self) -> int:
        return self.units.count

    def _row_stream(self, examples_per_epoch: int) -> RowStream:
        """Packed rows of `examples_per_epoch` examples an epoch, each group's rows shuffled by its own key."""
        return RowStream(
            examples_per_epoch,
            self.example_lengths,
            self.data.max_seq_len,
            self.examples_per_row,
            lambda group: derive_key(self.seed, Stream.PACKING, self.stream, group),
        )

    def instances(self, rows_B: np.ndarray) -> Instances:
        """The examples of global indices `rows_B` (int64): unit by per-epoch permutation, then pairing."""
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

    def example_lengths(self, examples_N: np.ndarray) -> np.ndarray:
        """int64 [N]: positions each example takes, [CLS] and [SEP]s included (all a packer needs). The
        instances of a run of examples (a group being packed) are kept for the rows built from it next."""
        instances = self.instances(examples_N)
        if len(examples_N) and np.all(np.diff(examples_N) == 1):
            if len(self._recent_instances) >= 4:
                self._recent_instances.pop(next(iter(self._recent_instances)))
            self._recent_instances[int(examples_N[0])] = instances
        len_b_N = instances.b_end - instances.b_start
        return (instances.a_end - instances.a_start) + 2 + np.where(len_b_N > 0, len_b_N + 1, 0)

    def _instances_of(self, examples_N: np.ndarray) -> Instances:
        """`instances(examples_N)`, taken from a packed group's when it holds them all: an example's pair is a
        function of its index alone, so taking it from the group's draw gives the same spans."""
        for first, instances in self._recent_instances.items():
            if len(examples_N) and first <= examples_N.min() and examples_N.max() < first + len(instances):
                return instances.take(examples_N - first)
        return self.instances(examples_N)

    def examples(self, examples_N: np.ndarray) -> tuple[Batch, Instances]:
        """Examples `examples_N` laid out and masked as rows of their own (`mask_examples`), and their instances."""
        instances = self._instances_of(examples_N)
        rng = RowRandom(derive_key(self.seed, Stream.MASKING, self.stream), examples_N)
        masked = mask_examples(instances, self.tokenized.token_ids, self.ids, self.data, self.masking, rng, self.mlm)
        return masked, instances

    def rows(self, rows_B: np.ndarray) -> tuple[Batch, Instances]:
        """The batch of one example per row, examples `rows_B`, and their instances."""
        examples, instances = self.examples(rows_B)
        slots = self.masking.num_predictions(self.data.max_seq_len)
        return pack_rows(examples, one_per_row(len(rows_B)), 1, slots, self.ids.pad), instances

    def packed_rows(self, packed: PackedRows) -> tuple[Batch, Instances]:
        """The batch of packed rows `packed` and the instances of their examples (row by row, slot by slot)."""
        examples, instances = self.examples(packed.examples)
        batch = pack_rows(examples, packed.row_starts, self.examples_per_row, self.num_predictions, self.ids.pad)
        return batch, instances

    def position(self, step: int) -> DataPosition:
        """The position before batch `step`; packed, found by packing every group before it (O(groups))."""
        if self.row_stream is None:
            epoch, offset = divmod(step * self.batch_size, self.units.count)
            return DataPosition(step=step, epoch=epoch, offset=offset)
        return self._packed_position(step, Anchor())

    def _packed_position(self, step: int, start: Anchor) -> DataPosition:
        assert self.row_stream is not None
        anchor = self.row_stream.anchor_of(step * self.batch_size, start)
        first, _ = self.row_stream.group_examples_range(anchor.group)
        epoch, offset = divmod(first, self.units.count)
        return DataPosition(step, epoch, offset, anchor.group, anchor.first_row)

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
        rows_B = self.local_row_indices(position.step, process_index, process_count)
        if self.row_stream is None:
            batch, instances = self.rows(rows_B)
            return batch, instances, self.position(position.step + 1)
        anchor = Anchor(position.group, position.group_first_row)
        batch, instances = self.packed_rows(self.row_stream.rows(int(rows_B[0]), len(rows_B), anchor))
        return batch, instances, self._packed_position(position.step + 1, anchor)

    def iterate(
        self, start: DataPosition = DataPosition(), process_index: int = 0, process_count: int = 1
    ) -> Iterator[tuple[Batch, DataPosition]]:
        """Endless (local batch, position after it) pairs from `start`."""
        position = start
        while True:
            batch, _, position = self.batch_at(position, process_index, process_count)
            yield batch, position

    def num_eval_rows(self, max_batches: int) -> int:
        """Held-out examples scored per eval: every unit once, at most `max_batches` × batch size (0: all);
        packed or not, the same examples."""
        count = self.units.count
        return count if max_batches == 0 else min(count, max_batches * self.batch_size)

    def _eval_rows(self, max_batches: int) -> RowStream:
        """The packed rows of the held-out examples of `num_eval_rows` (epoch 0 of a stream of them)."""
        count = self.num_eval_rows(max_batches)
        if count not in self._eval_row_streams:
            self._eval_row_streams[count] = self._row_stream(count)
        return self._eval_row_streams[count]

    def num_eval_batches(self, max_batches: int) -> int:
        """Batches per eval: the rows of the held-out examples of `num_eval_rows`, the last batch padded."""
        rows = self.num_eval_rows(max_batches) if not self.packed else self._eval_rows(max_batches).rows_per_epoch()
        return -(-rows // self.batch_size)

    def eval_batch(
        self, index: int, max_batches: int, process_index: int = 0, process_count: int = 1
    ) -> tuple[Batch, Instances]:
        """Eval batch `index` (this process' rows): the fixed draw of epoch 0. Rows past the end weigh 0:
        unpacked, they repeat the first example; packed, they are empty."""
        rows_B = self.local_row_indices(index, process_index, process_count)
        if self.packed:
            return self._packed_eval_batch(rows_B, max_batches)
        real_B = rows_B < self.num_eval_rows(max_batches)
        batch, instances = self.rows(np.where(real_B, rows_B, 0))
        batch["masked_lm_weights"] = batch["masked_lm_weights"] * real_B[:, None]
        batch["example_weights"] = batch["example_weights"] * real_B[:, None]
        return batch, instances

    def _packed_eval_batch(self, rows_B: np.ndarray, max_batches: int) -> tuple[Batch, Instances]:
        row_stream = self._eval_rows(max_batches)
        real = max(0, min(len(rows_B), row_stream.rows_per_epoch() - int(rows_B[0])))
        packed = PackedRows(np.zeros(1, np.int64), np.zeros(0, np.int64))
        if real:
            packed = row_stream.rows(int(rows_B[0]), real, Anchor())
        empty_rows = np.full(len(rows_B) - real, packed.row_starts[-1])
        return self.packed_rows(PackedRows(np.concatenate([packed.row_starts, empty_rows]), packed.examples))

    def eval_batches(self, max_batches: int, process_index: int = 0, process_count: int = 1) -> list[Batch]:
        """Every eval batch (this process' rows), built once and reused at every eval."""
        indices = range(self.num_eval_batches(max_batches))
        return [self.eval_batch(i, max_batches, process_index, process_count)[0] for i in indices]
