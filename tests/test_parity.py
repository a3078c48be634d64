"""Float32 parity with PyTorch: our gathered heads and summed losses give BertForPreTraining's loss."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from bert_flax.config import Config, DataConfig, MaskingConfig, ModelConfig, TokenizerConfig
from bert_flax.data.masking import IGNORE_INDEX, to_hf_labels
from bert_flax.data.pipeline import Batch, DataPosition, PretrainingStream
from bert_flax.data.token_corpus import tokenize_documents
from bert_flax.data.tokenizer import TokenIds, load_tokenizer
from bert_flax.interop.model_init import build_model
from bert_flax.model.losses import metric_sums, normalize
from bert_flax.model.pretraining import pretraining_logits

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MAX_SEQ_LEN, BATCH_SIZE = 64, 8
# Never loosen: float32 losses of ~10 agree to a few ulps times the depth.
LOSS_ATOL = 1e-4


@pytest.fixture(scope="module")
def torch_checkpoint(minilm_dir: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """MiniLM as a BertForPreTraining (heads from a seeded random init), in eval mode and saved as safetensors."""
    torch.manual_seed(0)
    model = transformers.BertForPreTraining.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    path = tmp_path_factory.mktemp("minilm_pretraining")
    model.save_pretrained(path, safe_serialization=True)
    assert (path / "model.safetensors").is_file()
    return model, path


def meditations_stream(minilm_dir: str, corpus_lines: list[str], packing: bool = False) -> PretrainingStream:
    """Pre-training batches of Meditations paragraphs in MiniLM's vocabulary."""
    tokenizer = load_tokenizer(TokenizerConfig(name=minilm_dir))
    tokenized = tokenize_documents(corpus_lines[:40], tokenizer)
    data = DataConfig(max_seq_len=MAX_SEQ_LEN, packing=packing, max_examples_per_row=4)
    return PretrainingStream(
        tokenized,
        TokenIds.from_tokenizer(tokenizer),
        np.ones(tokenized.num_documents, dtype=bool),
        data,
        MaskingConfig(),
        nsp=True,
        seed=0,
        batch_size=BATCH_SIZE,
    )


@pytest.fixture(scope="module")
def batch(minilm_dir: str, corpus_lines: list[str]) -> Batch:
    """A real pre-training batch of Meditations paragraphs in MiniLM's vocabulary."""
    batch, _, _ = meditations_stream(minilm_dir, corpus_lines).batch_at(DataPosition())
    return batch


def test_batch_exercises_padding_and_both_labels(batch: Batch) -> None:
    assert set(batch["next_sentence_labels"][:, 0].tolist()) == {0, 1}
    assert np.any(batch["masked_lm_weights"] == 0), "no padding prediction slots"
    assert np.any(batch["attention_mask"] == 0), "no padded sequence"
    assert np.any(batch["token_type_ids"] == 1)


@pytest.mark.parametrize("impl", ["hf", "fast"])
def test_loss_matches_pytorch(
    torch_checkpoint: tuple[object, Path], batch: Batch, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch_model, path = torch_checkpoint
    config = Config(model=ModelConfig(init=str(path), impl=impl), data=DataConfig(max_seq_len=MAX_SEQ_LEN))
    flax_model = build_model(config, torch_model.config.vocab_size)
    assert flax_model.initialized_heads == ()

    logits_fn = jax.jit(pretraining_logits, static_argnums=(0, 3, 5))  # one compile: faster than op-by-op
    mlm_logits_BxPxV, nsp_logits_Bx1x2 = logits_fn(
        flax_model.model, flax_model.params, batch, ("mlm", "nsp"), None, config.model
    )
    ours = normalize(metric_sums(mlm_logits_BxPxV, nsp_logits_Bx1x2, batch), ("mlm", "nsp"))

    labels_BxL = torch.from_numpy(to_hf_labels(batch)).long()
    assert int((labels_BxL != IGNORE_INDEX).sum()) == int(batch["masked_lm_weights"].sum())
    nsp_labels_B = torch.from_numpy(batch["next_sentence_labels"][:, 0]).long()
    with torch.no_grad():
        out = torch_model(
            input_ids=torch.from_numpy(batch["input_ids"]).long(),
            attention_mask=torch.from_numpy(batch["attention_mask"]).long(),
            token_type_ids=torch.from_numpy(batch["token_type_ids"]).long(),
            labels=labels_BxL,
            next_sentence_label=nsp_labels_B,
        )
    vocab = torch_model.config.vocab_size
    torch_mlm = torch.nn.functional.cross_entropy(out.prediction_logits.reshape(-1, vocab), labels_BxL.reshape(-1))
    torch_nsp = torch.nn.functional.cross_entropy(out.seq_relationship_logits, nsp_labels_B)
    assert abs(float(torch_mlm + torch_nsp) - float(out.loss)) < 1e-6  # the split of torch's loss is right

    assert abs(ours["mlm_loss"] - float(torch_mlm)) < LOSS_ATOL
    assert abs(ours["nsp_loss"] - float(torch_nsp)) < LOSS_ATOL
    assert abs(ours["loss"] - float(out.loss)) < LOSS_ATOL
    rows_BxP = np.arange(BATCH_SIZE)[:, None]
    torch_at_positions_BxPxV = out.prediction_logits.numpy()[rows_BxP, batch["masked_lm_positions"]]
    np.testing.assert_allclose(mlm_logits_BxPxV, torch_at_positions_BxPxV, atol=1e-4, rtol=0)
    np.testing.assert_allclose(nsp_logits_Bx1x2[:, 0], out.seq_relationship_logits.numpy(), atol=1e-4, rtol=0)


def test_packed_rows_give_each_example_its_own_logits(
    torch_checkpoint: tuple[object, Path], minilm_dir: str, corpus_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MiniLM (6 layers), model.impl=fast, real packed rows: every example's MLM and NSP logits equal the same
    example's alone (one per row), and the packed batch's loss is the unpacked one over the same examples."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch_model, path = torch_checkpoint
    config = Config(model=ModelConfig(init=str(path), impl="fast"), data=DataConfig(max_seq_len=MAX_SEQ_LEN))
    flax_model = build_model(config, torch_model.config.vocab_size)
    stream = meditations_stream(minilm_dir, corpus_lines, packing=True)
    packed, _, _ = stream.batch_at(DataPosition())
    assert packed["example_weights"].sum() > BATCH_SIZE  # rows hold more than one example
    alone, _ = stream.rows(stream.row_stream.rows(0, BATCH_SIZE, stream.row_stream.anchor_of(0)).examples)

    logits_fn = jax.jit(pretraining_logits, static_argnums=(0, 3, 5))
    mlm_BxPxV, nsp_BxEx2 = logits_fn(flax_model.model, flax_model.params, packed, ("mlm", "nsp"), None, config.model)
    alone_mlm, alone_nsp = logits_fn(flax_model.model, flax_model.params, alone, ("mlm", "nsp"), None, config.model)
    np.testing.assert_allclose(np.asarray(nsp_BxEx2)[packed["example_weights"] > 0], alone_nsp[:, 0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        np.asarray(mlm_BxPxV)[packed["masked_lm_weights"] > 0], np.asarray(alone_mlm)[alone["masked_lm_weights"] > 0],
        atol=1e-5, rtol=0,
    )
    ours = normalize(metric_sums(mlm_BxPxV, nsp_BxEx2, packed), ("mlm", "nsp"))
    theirs = normalize(metric_sums(alone_mlm, alone_nsp, alone), ("mlm", "nsp"))
    for key in ("loss", "mlm_loss", "nsp_loss"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-5), key
