"""Synthetic batches of the real shapes, for timing the step without reading a corpus."""

from __future__ import annotations

import numpy as np

from bert_flax.config import Config


def synthetic_vocab_size(config: Config) -> int:
    """The vocabulary the model gets without reading a corpus: tokenizer.vocab_size when the
    tokenizer is trained (a trained vocabulary can come out slightly smaller), else the size of
    the named tokenizer (which a `model.init` checkpoint must match)."""
    if config.tokenizer.train:
        return config.tokenizer.vocab_size
    from bert_flax.data.tokenizer import TokenIds, load_tokenizer

    return TokenIds.from_tokenizer(load_tokenizer(config.tokenizer)).vocab_size


def synthetic_batch(config: Config, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch of the real shapes with no padding: every row one example [CLS] A [SEP] B [SEP], A and B half
    each, and the pipeline's number of predictions for it (mask_prob × the 3-less length, rounded, at least 1,
    at most P). With data.packing the per-example arrays have the config's E slots (the first one used), so
    the step computes as on packed rows."""
    batch_size, seq_len = config.train.batch_size, config.data.max_seq_len
    num_slots, examples_per_row = config.num_predictions, config.data.examples_per_row
    cls_id, sep_id, mask_id, first_id = 2, 3, 4, 5  # trained vocabularies' order; ids do not change speed
    input_ids_BxL = rng.integers(first_id, vocab_size, (batch_size, seq_len), dtype=np.int32)
    middle = seq_len // 2
    input_ids_BxL[:, 0], input_ids_BxL[:, middle], input_ids_BxL[:, -1] = cls_id, sep_id, sep_id
    token_type_ids_BxL = np.zeros((batch_size, seq_len), np.int32)
    token_type_ids_BxL[:, middle + 1 :] = 1
    candidates = np.setdiff1d(np.arange(seq_len), [0, middle, seq_len - 1])
    one_example_slots = config.masking.num_predictions(seq_len)
    num_real = min(one_example_slots, max(1, round(config.masking.mask_prob * len(candidates))))
    positions_BxP = np.zeros((batch_size, num_slots), np.int32)
    weights_BxP = np.zeros((batch_size, num_slots), np.float32)
    for row in range(batch_size):
        positions_BxP[row, :num_real] = np.sort(rng.choice(candidates, num_real, replace=False))
    weights_BxP[:, :num_real] = 1.0
    masked_ids_BxP = np.where(weights_BxP > 0, np.take_along_axis(input_ids_BxL, positions_BxP, axis=1), 0)
    rows_B = np.arange(batch_size)[:, None]
    input_ids_BxL[rows_B, positions_BxP[:, :num_real]] = mask_id
    first_slot_BxE = (np.arange(examples_per_row) == 0)[None, :].repeat(batch_size, axis=0)
    return {
        "input_ids": input_ids_BxL,
        "token_type_ids": token_type_ids_BxL,
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
        "segment_ids": np.ones((batch_size, seq_len), np.int32),
        "position_ids": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len)).copy(),
        "masked_lm_positions": positions_BxP,
        "masked_lm_ids": masked_ids_BxP.astype(np.int32),
        "masked_lm_weights": weights_BxP,
        "cls_positions": np.zeros((batch_size, examples_per_row), np.int32),
        "next_sentence_labels": rng.integers(0, 2, (batch_size, examples_per_row), dtype=np.int32) * first_slot_BxE,
        "example_weights": first_slot_BxE.astype(np.float32),
    }
