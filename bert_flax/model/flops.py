"""Model FLOPs of a BERT pre-training step, for MFU: plain arithmetic (no JAX), shown by `bert-flax bench --help`."""

from __future__ import annotations

from typing import Any

FLOPS_HELP = (
    "MFU = model FLOPs/s ÷ (peak TFLOP/s per device × devices). Model FLOPs per token (B×L tokens per step): "
    "6·N_enc + 12·layers·L·H + 6·(H² + H·V)·P/L, where N_enc = layers·(12·H² + 13·H) is every parameter of "
    "the transformer layers (FFN 4·H; no embeddings, pooler or NSP head), 12·layers·L·H the attention scores "
    "and weighted sum (forward + backward), and the last term the MLM head's transform and decoder on the P "
    "predicted slots per sequence only. The baseline gets the same model FLOPs (its full-vocabulary head is "
    "extra work, not useful work). BERT-base at L=128, P=20: 547.0 M per token."
)


def encoder_parameters(bert: Any) -> int:
    """Parameters of the transformer layers (a BertConfig's sizes): Q, K, V and output (4·H² + 4·H),
    FFN (2·H·I + I + H), two LayerNorms (4·H). With I = 4·H: 12·H² + 13·H per layer."""
    h, i = bert.hidden_size, bert.intermediate_size
    per_layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
    return bert.num_hidden_layers * per_layer


def flops_per_token(bert: Any, seq_len: int, num_predictions: int) -> float:
    """Model FLOPs per token of a training step (forward + backward = 3 × forward); see FLOPS_HELP."""
    h, layers, vocab = bert.hidden_size, bert.num_hidden_layers, bert.vocab_size
    dense = 6 * encoder_parameters(bert)
    attention = 12 * layers * seq_len * h
    mlm_head = 6 * (h * h + h * vocab) * num_predictions / seq_len
    return float(dense + attention + mlm_head)
