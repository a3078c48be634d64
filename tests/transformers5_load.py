"""Run by tests/test_export_transformers5.py inside a transformers 5 environment (no bert_flax there).

Usage: python transformers5_load.py EXPORT_DIR OUT.npz — loads the export with three BERT classes,
records loading problems and weight warnings, and saves BertForPreTraining's logits on a fixed batch.
"""

import json
import logging
import sys

import numpy as np
import torch
import transformers

export_dir, out_path = sys.argv[1], sys.argv[2]
warnings_seen = []
handler = logging.Handler(logging.WARNING)
handler.emit = lambda record: warnings_seen.append(record.getMessage())
logging.getLogger("transformers").addHandler(handler)

report = {"transformers": transformers.__version__}
for name in ("BertForPreTraining", "BertForMaskedLM", "BertModel"):
    warnings_seen.clear()
    model, info = getattr(transformers, name).from_pretrained(export_dir, output_loading_info=True)
    report[name] = {
        "problems": {key: sorted(map(str, value)) for key, value in info.items() if value},
        "meta": any(p.is_meta for p in model.parameters()),
        "warnings": list(warnings_seen),
    }
    if name == "BertForPreTraining":
        tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir)
        batch = tokenizer(["The soul is dyed by its [MASK]."], ["Be good."], return_tensors="pt")
        with torch.no_grad():
            outputs = model.eval()(**batch)
        np.savez(
            out_path,
            input_ids=batch["input_ids"].numpy(),
            token_type_ids=batch["token_type_ids"].numpy(),
            attention_mask=batch["attention_mask"].numpy(),
            prediction_logits=outputs.prediction_logits.numpy(),
            seq_relationship_logits=outputs.seq_relationship_logits.numpy(),
        )
print(json.dumps(report))
