"""Step-indexed pre-training batches: NSP pairs re-drawn every epoch, masking drawn per batch.

All randomness is a function of (seed, epoch, step), so the batch at any position can be rebuilt
from the position alone: a resumed run sees exactly the batches of an uninterrupted one.
Epochs are concatenated into one stream; a batch may span the end of an epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from bert_flax.config import DataConfig, MaskingConfig
from bert_flax.data.masking import mask_tokens
from bert_flax.data.pairing import Instances, segment_bounds, segment_pairs, sentence_pairs, single_segments
from bert_flax.data.tokenized import TokenizedCorpus
from bert_flax.data.tokenizer import TokenIds
from bert_flax.errors import UserError

Batch = dict[str, np.ndarray]
# Independent random streams derived from the seed.
STREAM_PAIRING, STREAM_MASKING, STREAM_EVAL = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where a stream stands: batches produced so far, and the next instance (epoch, offset)."""

    step: int = 0
    epoch: int = 0
    offset: int = 0


def layout(instances: Instances, token_ids: np.ndarray, max_seq_len: int, ids: TokenIds) -> dict[str, np.ndarray]:
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
    token_ids: np.ndarray,
    ids: TokenIds,
    data: DataConfig,
    masking: MaskingConfig,
    rng: np.random.Generator,
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
    """Batches over `documents` of a tokenized corpus, addressable by DataPosition."""

    def __init__(
        self,
        tokenized: TokenizedCorpus,
        ids: TokenIds,
        documents: np.ndarray,
        data: DataConfig,
        masking: MaskingConfig,
        nsp: bool,
        seed: int,
        batch_size: int,
        mlm: bool = True,
    ) -> None:
        self.tokenized, self.ids, self.documents = tokenized, ids, np.asarray(documents, dtype=np.int64)
        self.data, self.masking, self.nsp, self.seed, self.batch_size = data, masking, nsp, seed, batch_size
        self.mlm = mlm
        self.max_tokens = data.max_seq_len - (3 if nsp else 2)
        self.bounds, self.document_segments = segment_bounds(tokenized, self.max_tokens)
        self.word_start_T = ~ids.is_continuation_V[tokenized.token_ids]
        self._epoch_cache: tuple[int, Instances] | None = None

    def draw_instances(self, rng: np.random.Generator) -> Instances:
        """One pass of pairing over the documents, shuffled."""
        args = (self.bounds, self.document_segments, self.documents, self.max_tokens)
        if not self.nsp:
            instances = single_segments(*args, rng)
        elif self.data.pairing == "sentences":
            instances = sentence_pairs(*args, rng)
        else:
            instances = segment_pairs(*args, self.data.short_seq_prob, self.word_start_T, rng)
        return instances.take(rng.permutation(len(instances)))

    def epoch_instances(self, epoch: int) -> Instances:
        """The instances of `epoch` (pairs are re-drawn every epoch); the last epoch is cached."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, STREAM_PAIRING, epoch])
            instances = self.draw_instances(rng)
            if len(instances) == 0:  # an endless search for a batch otherwise
                raise UserError(f"epoch {epoch} of the data has no examples; the documents are too short to pair")
            self._epoch_cache = (epoch, instances)
        return self._epoch_cache[1]

    def instances_at(self, position: DataPosition) -> tuple[Instances, DataPosition]:
        """The batch_size instances from `position` on, and the position after them."""
        parts, epoch, offset, needed = [], position.epoch, position.offset, self.batch_size
        while needed:
            instances = self.epoch_instances(epoch)
            take = min(needed, len(instances) - offset)
            parts.append(instances.take(slice(offset, offset + take)))
            needed -= take
            offset += take
            if offset == len(instances):
                epoch, offset = epoch + 1, 0
        merged = Instances(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Instances)))
        return merged, DataPosition(step=position.step + 1, epoch=epoch, offset=offset)

    def batch_at(self, position: DataPosition) -> tuple[Batch, Instances, DataPosition]:
        """The global batch at `position`, its instances, and the position after it."""
        instances, after = self.instances_at(position)
        rng = np.random.default_rng([self.seed, STREAM_MASKING, position.epoch, position.step])
        batch = make_batch(instances, self.tokenized.token_ids, self.ids, self.data, self.masking, rng, self.mlm)
        return batch, instances, after

    def iterate(
        self, start: DataPosition = DataPosition(), process_index: int = 0, process_count: int = 1
    ) -> Iterator[tuple[Batch, DataPosition]]:
        """Endless (local batch, position after it) pairs from `start`."""
        position = start
        while True:
            batch, _, position = self.batch_at(position)
            yield local_rows(batch, process_index, process_count), position

    def eval_instances(self) -> Instances:
        """The fixed pairing draw that evaluation uses."""
        return self.draw_instances(np.random.default_rng([self.seed, STREAM_EVAL]))

    def eval_batches(self) -> list[Batch]:
        """Fixed batches over all of `eval_instances()`; the last is padded with zero-weight rows.

        Every eval batch carries `example_weights` (float32 [B]): 1 for real rows, 0 for padding.
        """
        instances = self.eval_instances()
        batches = []
        for step, start in enumerate(range(0, len(instances), self.batch_size)):
            rows = np.arange(start, start + self.batch_size)
            real = rows < len(instances)
            chunk = instances.take(np.where(real, rows, start))
            rng = np.random.default_rng([self.seed, STREAM_EVAL, step])
            batch = make_batch(chunk, self.tokenized.token_ids, self.ids, self.data, self.masking, rng, self.mlm)
            batch["masked_lm_weights"] = batch["masked_lm_weights"] * real[:, None]
            batch["example_weights"] = real.astype(np.float32)
            batches.append(batch)
        return batches
